// AMX-INT8 peak probe: four independent tdpbusd per iteration (C[i][j] +=
// A[i] * B[j] over two A and two B tiles), each 16x16 int32 outputs over
// K = 64: 16,384 MACs per instruction. The caller must only run it where
// cpu_features().supports(Isa::amx) (which includes the Linux permission).
#include <immintrin.h>

#include <cstring>

#include "probes.h"

namespace npqbench {

namespace {

struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

}  // namespace

uint64_t probe_tdpbusd(uint64_t iters) {
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof cfg);
  cfg.palette_id = 1;
  for (int t = 0; t < 8; ++t) {  // every tile: 16 rows of 64 bytes
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  alignas(64) uint8_t buf[16 * 64];
  std::memset(buf, 1, sizeof buf);
  alignas(64) int32_t out[16 * 16];
  _tile_loadconfig(&cfg);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, buf, 64);
  _tile_loadd(5, buf, 64);
  _tile_loadd(6, buf, 64);
  _tile_loadd(7, buf, 64);
  for (uint64_t i = 0; i < iters; ++i) {
    _tile_dpbusd(0, 4, 6);
    _tile_dpbusd(1, 4, 7);
    _tile_dpbusd(2, 5, 6);
    _tile_dpbusd(3, 5, 7);
  }
  _tile_stored(0, out, 64);
  _tile_release();
  volatile int32_t sink = out[0];
  (void)sink;
  return iters * 4 * 16 * 16 * 64;
}

}  // namespace npqbench
