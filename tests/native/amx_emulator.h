// A software model of the AMX tile instructions the AMX kernel uses, so its
// logic (tile configuration, operand shapes, addressing, partial row blocks,
// the B panel layout) is tested on CPUs without AMX. Written from Intel's
// descriptions of LDTILECFG, TILELOADD, TILESTORED, TILEZERO, TILERELEASE and
// TDPBUSD, including the shape conditions under which the hardware raises #UD:
// a kernel that would fault aborts here with the reason.
//
// Include after <immintrin.h> and before the kernel source: the intrinsic
// names become calls into this model. It proves the kernel's arithmetic and
// indexing, not the instruction encodings; on AMX hardware the dispatch
// self-check compares the real kernel with the reference at import.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace npq_amx_emu {

struct State {
  bool configured = false;
  uint8_t rows[8] = {};
  uint16_t colsb[8] = {};
  alignas(64) uint8_t tile[8][16][64] = {};
};

inline State& state() {
  static thread_local State s;
  return s;
}

[[noreturn]] inline void fault(const char* what, int t) {
  std::fprintf(stderr, "AMX emulator: #UD: %s (tile %d)\n", what, t);
  std::abort();
}

// A tile the current configuration makes usable.
inline void need(int t) {
  const State& s = state();
  if (!s.configured) fault("tile instruction without a loaded configuration", t);
  if (t < 0 || t > 7) fault("tile register out of range", t);
  if (s.rows[t] == 0 || s.colsb[t] == 0) fault("tile not configured (rows or colsb is 0)", t);
}

inline void loadconfig(const void* p) {
  // Palette 1 layout: byte 0 palette, byte 1 start_row, bytes 16..47 colsb[16]
  // (u16), bytes 48..63 rows[16].
  const uint8_t* b = static_cast<const uint8_t*>(p);
  State& s = state();
  if (b[0] == 0) {  // palette 0: init state, no tiles
    s = State{};
    return;
  }
  if (b[0] != 1) fault("unsupported palette", b[0]);
  for (int i = 2; i < 16; ++i)
    if (b[i]) fault("reserved byte of the configuration is not zero", i);
  s = State{};
  s.configured = true;
  for (int t = 0; t < 16; ++t) {
    uint16_t c;
    std::memcpy(&c, b + 16 + 2 * t, 2);
    const uint8_t r = b[48 + t];
    if (t >= 8) {
      if (c || r) fault("configures a tile register beyond tmm7", t);
      continue;
    }
    if (r > 16 || c > 64) fault("tile larger than 16 rows x 64 bytes", t);
    if ((r == 0) != (c == 0)) fault("tile has rows without colsb or colsb without rows", t);
    s.rows[t] = r;
    s.colsb[t] = c;
  }
}

inline void release() { state() = State{}; }

inline void zero(int t) {
  need(t);
  std::memset(state().tile[t], 0, sizeof(state().tile[t]));
}

// Rows beyond the configured rows and bytes beyond colsb are zeroed.
inline void loadd(int t, const void* base, long stride) {
  need(t);
  State& s = state();
  std::memset(s.tile[t], 0, sizeof(s.tile[t]));
  for (int r = 0; r < s.rows[t]; ++r)
    std::memcpy(s.tile[t][r], static_cast<const uint8_t*>(base) + r * stride, s.colsb[t]);
}

inline void stored(int t, void* base, long stride) {
  need(t);
  const State& s = state();
  for (int r = 0; r < s.rows[t]; ++r)
    std::memcpy(static_cast<uint8_t*>(base) + r * stride, s.tile[t][r], s.colsb[t]);
}

// dst[m][n] += sum over k, i of u8(a[m][4k+i]) * s8(b[k][4n+i]), int32 wrapping.
inline void dpbusd(int dst, int a, int b) {
  need(dst);
  need(a);
  need(b);
  State& s = state();
  if (dst == a || dst == b || a == b) fault("TDPBUSD operands must be distinct tiles", dst);
  if (s.colsb[a] / 4 != s.rows[b]) fault("colsb(src1) / 4 != rows(src2)", a);
  if (s.colsb[dst] != s.colsb[b]) fault("colsb(dst) != colsb(src2)", dst);
  if (s.rows[dst] != s.rows[a]) fault("rows(dst) != rows(src1)", dst);
  if (s.colsb[a] % 4 || s.colsb[dst] % 4) fault("colsb not a multiple of 4", dst);
  for (int m = 0; m < s.rows[dst]; ++m)
    for (int n = 0; n < s.colsb[dst] / 4; ++n) {
      int32_t c;
      std::memcpy(&c, &s.tile[dst][m][4 * n], 4);
      uint32_t acc = static_cast<uint32_t>(c);
      for (int k = 0; k < s.colsb[a] / 4; ++k)
        for (int i = 0; i < 4; ++i)
          acc += static_cast<uint32_t>(static_cast<int32_t>(s.tile[a][m][4 * k + i]) *
                                       static_cast<int8_t>(s.tile[b][k][4 * n + i]));
      std::memcpy(&s.tile[dst][m][4 * n], &acc, 4);
    }
}

}  // namespace npq_amx_emu

#undef _tile_loadd
#undef _tile_stored
#undef _tile_zero
#undef _tile_dpbusd
#undef _tile_loadconfig
#undef _tile_release
#define _tile_loadconfig(p) npq_amx_emu::loadconfig(p)
#define _tile_release() npq_amx_emu::release()
#define _tile_zero(t) npq_amx_emu::zero(t)
#define _tile_loadd(t, base, stride) npq_amx_emu::loadd(t, base, stride)
#define _tile_stored(t, base, stride) npq_amx_emu::stored(t, base, stride)
#define _tile_dpbusd(dst, a, b) npq_amx_emu::dpbusd(dst, a, b)
