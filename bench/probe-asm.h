// Text of the x86 probe loops' inline assembly. The loops are a line per
// independent chain, repeated 6 or 12 times with a different register number:
// these macros write the repetitions, so each probe states its instruction once.
// Macros only build string literals, so no code is shared between files
// compiled with different ISA flags.
#pragma once

// F(0) F(1) ... : a chain per register number.
#define NPQ_CHAINS6(F) F(0) F(1) F(2) F(3) F(4) F(5)
#define NPQ_CHAINS12(F) NPQ_CHAINS6(F) F(6) F(7) F(8) F(9) F(10) F(11)
// F(acc, tmp) for six accumulators 0-5 with temporaries 6-11.
#define NPQ_CHAIN_PAIRS6(F) F(0, 6) F(1, 7) F(2, 8) F(3, 9) F(4, 10) F(5, 11)

// "op %%<src2>, %%<src1>, %%<reg>i": one chain's instruction (AT&T operand order).
#define NPQ_OP3(op, src2, src1, reg, i) op " %%" src2 ", %%" src1 ", %%" reg #i "\n\t"
// Zeroes register reg#i with the xor instruction xop.
#define NPQ_ZERO(xop, reg, i) NPQ_OP3(xop, reg #i, reg #i, reg, i)

// The timed loop: %[n] iterations of body, then vzeroupper.
#define NPQ_PROBE_LOOP(body) \
  "1:\n\t" body              \
  "dec %[n]\n\t"             \
  "jnz 1b\n\t"               \
  "vzeroupper\n\t"
