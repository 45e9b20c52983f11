// The worker of bench/floor.mts: hands the input back, its buffer moved as the service's
// worker moves an output (src/workers/worker.ts).
import { move } from 'piscina'

export default function echo (input) {
  return move(input)
}
