;; count-vowels for the `json` ABI, in WebAssembly text.
;;
;;   input  {"text":"Hello World"}   ->   output {"vowels":3}
;;
;; The contract: export `memory` and `execute(ptr, len) -> (ptr, len)`. There is no `alloc`
;; export, so the host grows the memory by enough pages and writes the input JSON past the
;; old end; `execute` gets its address and length and returns where its answer is. The
;; answer must be JSON. Every call runs in a fresh instance, so nothing here is ever freed.
;;
;; Counts a, e, i, o, u in either case (ASCII: "é" is not a vowel here) in the top-level
;; member "text" (escapes decoded, so "\u0041" counts). Anything else -- no such member, a
;; member that is not a string, input that is not an object -- answers
;; {"error":"text must be a string"}.
(module
  (memory (export "memory") 1)
  ;; 0..63: the answer is built here. 64..: the error answer.
  (data (i32.const 0) "{\"vowels\":")
  (data (i32.const 64) "{\"error\":\"text must be a string\"}")

  (global $p (mut i32) (i32.const 0))    ;; read cursor into the input
  (global $end (mut i32) (i32.const 0))  ;; end of the input

  ;; the byte under the cursor, or -1 at the end of the input
  (func $peek (result i32)
    (if (result i32) (i32.lt_u (global.get $p) (global.get $end))
      (then (i32.load8_u (global.get $p)))
      (else (i32.const -1))))

  (func $advance (global.set $p (i32.add (global.get $p) (i32.const 1))))

  (func $skip_ws (local $c i32)
    (block $done
      (loop $next
        (local.set $c (call $peek))
        (br_if $done (i32.eqz
          (i32.or (i32.or (i32.eq (local.get $c) (i32.const 32)) (i32.eq (local.get $c) (i32.const 9)))
                  (i32.or (i32.eq (local.get $c) (i32.const 10)) (i32.eq (local.get $c) (i32.const 13))))))
        (call $advance)
        (br $next))))

  ;; value of a hex digit, or -1
  (func $hex (param $c i32) (result i32)
    (if (i32.and (i32.ge_u (local.get $c) (i32.const 48)) (i32.le_u (local.get $c) (i32.const 57)))
      (then (return (i32.sub (local.get $c) (i32.const 48)))))
    (local.set $c (i32.or (local.get $c) (i32.const 32)))
    (if (i32.and (i32.ge_u (local.get $c) (i32.const 97)) (i32.le_u (local.get $c) (i32.const 102)))
      (then (return (i32.sub (local.get $c) (i32.const 87)))))
    (i32.const -1))

  ;; Inside a string: the next character (a byte, or the code unit of an escape), -1 after
  ;; the closing quote, -2 on an error (the input ends, a bad escape).
  (func $str_next (result i32) (local $c i32) (local $v i32) (local $h i32) (local $i i32)
    (local.set $c (call $peek))
    (if (i32.lt_s (local.get $c) (i32.const 0)) (then (return (i32.const -2))))
    (call $advance)
    (if (i32.eq (local.get $c) (i32.const 34)) (then (return (i32.const -1))))   ;; "
    (if (i32.ne (local.get $c) (i32.const 92)) (then (return (local.get $c))))   ;; not \
    (local.set $c (call $peek))
    (call $advance)
    (if (i32.eq (local.get $c) (i32.const 117)) ;; \uXXXX
      (then
        (loop $digit
          (local.set $h (call $hex (call $peek)))
          (if (i32.lt_s (local.get $h) (i32.const 0)) (then (return (i32.const -2))))
          (call $advance)
          (local.set $v (i32.or (i32.shl (local.get $v) (i32.const 4)) (local.get $h)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $digit (i32.lt_u (local.get $i) (i32.const 4))))
        (return (local.get $v))))
    (if (i32.eq (local.get $c) (i32.const 34)) (then (return (i32.const 34))))   ;; \"
    (if (i32.eq (local.get $c) (i32.const 92)) (then (return (i32.const 92))))   ;; \\
    (if (i32.eq (local.get $c) (i32.const 47)) (then (return (i32.const 47))))   ;; \/
    (if (i32.eq (local.get $c) (i32.const 98)) (then (return (i32.const 8))))    ;; \b
    (if (i32.eq (local.get $c) (i32.const 102)) (then (return (i32.const 12))))  ;; \f
    (if (i32.eq (local.get $c) (i32.const 110)) (then (return (i32.const 10))))  ;; \n
    (if (i32.eq (local.get $c) (i32.const 114)) (then (return (i32.const 13))))  ;; \r
    (if (i32.eq (local.get $c) (i32.const 116)) (then (return (i32.const 9))))   ;; \t
    (i32.const -2))

  ;; after an opening quote: skips to after the closing one; 0 on an error
  (func $skip_string (result i32) (local $u i32)
    (loop $next
      (local.set $u (call $str_next))
      (if (i32.eq (local.get $u) (i32.const -1)) (then (return (i32.const 1))))
      (if (i32.eq (local.get $u) (i32.const -2)) (then (return (i32.const 0))))
      (br $next))
    (unreachable))

  ;; skips one JSON value (strings, nested arrays and objects, scalars); 0 on an error
  (func $skip_value (result i32) (local $c i32) (local $depth i32) (local $start i32)
    (call $skip_ws)
    (local.set $c (call $peek))
    (if (i32.eq (local.get $c) (i32.const 34))
      (then (call $advance) (return (call $skip_string))))
    (if (i32.or (i32.eq (local.get $c) (i32.const 123)) (i32.eq (local.get $c) (i32.const 91)))
      (then
        (loop $next
          (local.set $c (call $peek))
          (if (i32.lt_s (local.get $c) (i32.const 0)) (then (return (i32.const 0))))
          (call $advance)
          (if (i32.eq (local.get $c) (i32.const 34))
            (then
              (if (i32.eqz (call $skip_string)) (then (return (i32.const 0))))
              (br $next)))
          (if (i32.or (i32.eq (local.get $c) (i32.const 123)) (i32.eq (local.get $c) (i32.const 91)))
            (then (local.set $depth (i32.add (local.get $depth) (i32.const 1)))))
          (if (i32.or (i32.eq (local.get $c) (i32.const 125)) (i32.eq (local.get $c) (i32.const 93)))
            (then
              (local.set $depth (i32.sub (local.get $depth) (i32.const 1)))
              (if (i32.eqz (local.get $depth)) (then (return (i32.const 1))))))
          (br $next))))
    ;; a number, true, false or null: up to the next delimiter
    (local.set $start (global.get $p))
    (block $done
      (loop $next
        (local.set $c (call $peek))
        (br_if $done (i32.lt_s (local.get $c) (i32.const 0)))
        (br_if $done (i32.or (i32.or (i32.eq (local.get $c) (i32.const 44)) (i32.eq (local.get $c) (i32.const 125)))
                             (i32.or (i32.eq (local.get $c) (i32.const 93)) (i32.le_u (local.get $c) (i32.const 32)))))
        (call $advance)
        (br $next)))
    (i32.ne (global.get $p) (local.get $start)))

  ;; is the code unit an ASCII vowel, either case? (u | 32 turns A..Z into a..z)
  (func $is_vowel (param $u i32) (result i32)
    (local.set $u (i32.or (local.get $u) (i32.const 32)))
    (i32.or
      (i32.or (i32.eq (local.get $u) (i32.const 97)) (i32.eq (local.get $u) (i32.const 101)))
      (i32.or (i32.eq (local.get $u) (i32.const 105))
        (i32.or (i32.eq (local.get $u) (i32.const 111)) (i32.eq (local.get $u) (i32.const 117))))))

  ;; the vowels of the top-level member "text" (the first one), or -1
  (func $count (result i32) (local $c i32) (local $u i32) (local $i i32) (local $match i32) (local $n i32)
    (call $skip_ws)
    (if (i32.ne (call $peek) (i32.const 123)) (then (return (i32.const -1))))    ;; {
    (call $advance)
    (loop $member
      (call $skip_ws)
      (if (i32.ne (call $peek) (i32.const 34)) (then (return (i32.const -1))))   ;; a key, or } with no text
      (call $advance)
      ;; compare the key, decoded, with "text"
      (local.set $i (i32.const 0))
      (local.set $match (i32.const 1))
      (block $key_end
        (loop $key
          (local.set $u (call $str_next))
          (if (i32.eq (local.get $u) (i32.const -2)) (then (return (i32.const -1))))
          (br_if $key_end (i32.eq (local.get $u) (i32.const -1)))
          (if (i32.or (i32.ge_u (local.get $i) (i32.const 4))
                      (i32.ne (local.get $u) (i32.load8_u offset=128 (local.get $i))))
            (then (local.set $match (i32.const 0))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $key)))
      (local.set $match (i32.and (local.get $match) (i32.eq (local.get $i) (i32.const 4))))
      (call $skip_ws)
      (if (i32.ne (call $peek) (i32.const 58)) (then (return (i32.const -1))))   ;; :
      (call $advance)
      (call $skip_ws)
      (if (local.get $match)
        (then
          (if (i32.ne (call $peek) (i32.const 34)) (then (return (i32.const -1))))
          (call $advance)
          (loop $char
            (local.set $u (call $str_next))
            (if (i32.eq (local.get $u) (i32.const -2)) (then (return (i32.const -1))))
            (if (i32.eq (local.get $u) (i32.const -1)) (then (return (local.get $n))))
            (local.set $n (i32.add (local.get $n) (call $is_vowel (local.get $u))))
            (br $char))))
      (if (i32.eqz (call $skip_value)) (then (return (i32.const -1))))
      (call $skip_ws)
      (local.set $c (call $peek))
      (call $advance)
      (br_if $member (i32.eq (local.get $c) (i32.const 44)))                     ;; , next member
      (return (i32.const -1)))                                                   ;; } : no text
    (unreachable))
  (data (i32.const 128) "text")

  (func (export "execute") (param $ptr i32) (param $len i32) (result i32 i32)
    (local $n i32) (local $digits i32) (local $v i32) (local $at i32)
    (global.set $p (local.get $ptr))
    (global.set $end (i32.add (local.get $ptr) (local.get $len)))
    (local.set $n (call $count))
    (if (i32.lt_s (local.get $n) (i32.const 0))
      (then (return (i32.const 64) (i32.const 33))))
    ;; {"vowels": is at 0..9; the digits go at 10.., then }
    (local.set $v (local.get $n))
    (loop $count_digits
      (local.set $digits (i32.add (local.get $digits) (i32.const 1)))
      (local.set $v (i32.div_u (local.get $v) (i32.const 10)))
      (br_if $count_digits (local.get $v)))
    (local.set $at (i32.add (i32.const 10) (local.get $digits)))
    (i32.store8 (local.get $at) (i32.const 125))
    (loop $digit
      (local.set $at (i32.sub (local.get $at) (i32.const 1)))
      (i32.store8 (local.get $at) (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digit (local.get $n)))
    (i32.const 0)
    (i32.add (i32.const 11) (local.get $digits))))
