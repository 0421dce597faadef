#include "conv2d.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include "../qmath.h"
#include "elementwise.h"
#include "linear.h"
#include "threadpool.h"

namespace npq {

namespace {

constexpr size_t kMaxMultiplier = 16;  // depthwise channel multipliers the dwconv path takes
constexpr size_t kMaxIndirectionBytes = 8 << 20;  // larger tables are not cached
constexpr size_t kGatherSlack = 16;               // short gathered runs are copied as 16-byte moves

// Indirection entries are byte offsets from the first pixel of an image's
// group (the kernels add that address); kPad marks padding, which reads the
// zero-point row instead.
constexpr size_t kPad = SIZE_MAX;

std::string sz(size_t v) { return std::to_string(v); }

bool is_depthwise(const ConvGeometry& g) {
  const size_t cg = g.in_c / g.groups, og = g.out_c / g.groups;
  // One input channel per group. A single-input-channel conv with many outputs
  // (groups == 1) is a better GEMM than a depthwise conv with a huge multiplier.
  return cg == 1 && og <= kMaxMultiplier && (g.groups > 1 || g.out_c == 1);
}

bool is_pointwise(const ConvGeometry& g) {
  return g.groups == 1 && g.kh == 1 && g.kw == 1 && g.stride_h == 1 && g.stride_w == 1 &&
         g.pad_top == 0 && g.pad_left == 0 && g.pad_bottom == 0 && g.pad_right == 0;
}

// dst[0, n) = src[0, n) for the short copies of the gathered path, without a
// library call: two overlapping fixed-size moves cover any n in [k, 2k].
inline void copy_bytes(uint8_t* dst, const uint8_t* src, size_t n) {
  auto two = [&](auto word) {
    decltype(word) a, b;
    std::memcpy(&a, src, sizeof(a));
    std::memcpy(&b, src + n - sizeof(b), sizeof(b));
    std::memcpy(dst, &a, sizeof(a));
    std::memcpy(dst + n - sizeof(b), &b, sizeof(b));
  };
  if (n > 16)
    std::memcpy(dst, src, n);
  else if (n >= 8)
    two(uint64_t{});
  else if (n >= 4)
    two(uint32_t{});
  else if (n >= 2)
    two(uint16_t{});
  else if (n == 1)
    *dst = *src;
}

// dst[3i + c] = plane c's byte i (c < 3, i < n): one row of a 3-channel NCHW
// image as NHWC. Four pixels per step: the three planes' 4 bytes each become
// 3 words of 4 bytes (two shifts and ORs per word).
inline void interleave3(const uint8_t* r, const uint8_t* g, const uint8_t* b, size_t n,
                        uint8_t* dst) {
  size_t i = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  for (; i + 4 <= n; i += 4, dst += 12) {
    uint32_t x, y, z;
    std::memcpy(&x, r + i, 4);
    std::memcpy(&y, g + i, 4);
    std::memcpy(&z, b + i, 4);
    // little endian: bytes r0 g0 b0 r1 | g1 b1 r2 g2 | b2 r3 g3 b3
    const uint32_t w0 = (x & 0xFF) | (y & 0xFF) << 8 | (z & 0xFF) << 16 | (x & 0xFF00) << 16;
    const uint32_t w1 =
        (y >> 8 & 0xFF) | (z >> 8 & 0xFF) << 8 | (x >> 16 & 0xFF) << 16 | (y >> 16 & 0xFF) << 24;
    const uint32_t w2 = (z >> 16 & 0xFF) | (x >> 24) << 8 | (y >> 24) << 16 | (z >> 24) << 24;
    std::memcpy(dst, &w0, 4);
    std::memcpy(dst + 4, &w1, 4);
    std::memcpy(dst + 8, &w2, 4);
  }
#endif
  for (; i < n; ++i, dst += 3) {
    dst[0] = r[i];
    dst[1] = g[i];
    dst[2] = b[i];
  }
}

// A grow-only per-thread scratch buffer (64-byte aligned).
struct Scratch {
  AlignedBuffer buf;
  size_t size = 0;
  uint8_t* get(size_t bytes) {
    if (bytes > size) {
      buf = aligned_zeros(bytes);
      size = bytes;
    }
    return buf.get();
  }
};

// Requantization constants for all output channels, padded with a neutral
// tail so kernels may read whole tiles past the last channel.
struct Epilogue {
  std::vector<float> bias_s, mult;
  RequantEpilogue at(size_t c0, const Conv2dArgs& a) const {
    return RequantEpilogue{bias_s.data() + c0, mult.data() + c0, a.yz, a.out_min, a.out_max};
  }
};

Epilogue make_epilogue(size_t out_c, const Conv2dArgs& a) {
  const size_t padded = out_c + 64;
  std::vector<float> ws(padded, 1.0f);
  std::copy(a.w_scale, a.w_scale + out_c, ws.begin());
  Epilogue e{std::vector<float>(padded, 0.0f), std::vector<float>(padded, 0.0f)};
  if (!requant_constants(out_c, a.xs, ws.data(), a.ys, a.bias, e.bias_s.data(), e.mult.data()))
    throw ValueError(
        "requantization constants are not finite: check the input scale, weight "
        "scales, output scale and bias (scales must be > 0 and finite, and "
        "|bias| / (input_scale * weight_scale) < 2^30)");
  return e;
}

}  // namespace

void check_conv_geometry(const ConvGeometry& g) {
  if (g.in_c == 0 || g.out_c == 0 || g.groups == 0)
    throw ValueError("in_channels, out_channels and groups must be >= 1, got " + sz(g.in_c) + ", " +
                     sz(g.out_c) + ", " + sz(g.groups));
  if (g.in_c % g.groups || g.out_c % g.groups)
    throw ValueError("in_channels (" + sz(g.in_c) + ") and out_channels (" + sz(g.out_c) +
                     ") must both be divisible by groups (" + sz(g.groups) + ")");
  if (g.kh == 0 || g.kw == 0) throw ValueError("kernel_size must be >= 1");
  if (g.stride_h == 0 || g.stride_w == 0) throw ValueError("stride must be >= 1");
  if (g.dil_h == 0 || g.dil_w == 0) throw ValueError("dilation must be >= 1");
  const size_t k = g.kh * g.kw * (g.in_c / g.groups);
  if (k > kMaxK)
    throw ValueError("the reduction length (in_channels/groups * kh * kw = " + sz(k) +
                     ") exceeds npquant's exact int32 accumulation bound " + sz(kMaxK) +
                     "; use more groups or a smaller kernel");
}

size_t conv_out_size(size_t in, size_t k, size_t stride, size_t dil, size_t pad0, size_t pad1,
                     const char* dim) {
  const size_t span = dil * (k - 1) + 1;
  if (in + pad0 + pad1 < span)
    throw ValueError(std::string("kernel ") + dim + " " + sz(span) + " (dilated) is larger than " +
                     "the padded input " + dim + " " + sz(in + pad0 + pad1) + " (input " + sz(in) +
                     " + padding " + sz(pad0 + pad1) + "); use a larger input or more padding");
  return (in + pad0 + pad1 - span) / stride + 1;
}

bool winograd_pays(const ConvGeometry& g) { return g.in_c >= 8; }

namespace {

// The stem path, on the ISA's full-range indirect GEMM (ConvKernels::stem): one
// group whose channels do not fill that kernel's K groups (a 3-channel first
// layer), no horizontal dilation (a kernel row is one run of kw*C canvas bytes),
// and at least 3/4 of the run's K groups useful (3x3 on 3 channels: 9 of 12 bytes
// with K in fours, 9 of 10 in pairs; 7x7: 21 of 24, 21 of 22).
bool stem_fits(const ConvGeometry& g, const ConvKernels& k) {
  if (!k.stem.requant || k.stem.layout.w127 || g.groups != 1 || g.dil_w != 1) return false;
  const size_t kr = k.stem.layout.kr, run = g.kw * g.in_c;
  return g.in_c % kr != 0 && 4 * run >= 3 * round_up(run, kr);
}

}  // namespace

PackedConv2d::PackedConv2d(const int8_t* w, const ConvGeometry& g, const ConvKernels& k,
                           bool use_igemm, WinogradUse wino)
    : g_(g), k_(k) {
  check_conv_geometry(g);
  const size_t cg = g.in_c / g.groups, og = g.out_c / g.groups, ks = g.kh * g.kw;
  if (k.wino.name && wino != WinogradUse::never && winograd_geometry(g) && !is_depthwise(g) &&
      (wino == WinogradUse::when_exact || winograd_pays(g)) &&
      winograd_exact(w, g.out_c, cg * ks)) {
    path_ = Path::winograd;
    wino_ = WinogradWeights(w, g.out_c, cg, k.wino.nr, k.wino.kr);
    return;
  }
  if (is_depthwise(g)) {
    path_ = Path::dwconv;
    if (g.stride_w > 1) k_.dwconv = k.dwconv_strided;
    const DwconvKernel& dk = k_.dwconv;
    const size_t nq = (g.kw + dk.g - 1) / dk.g;
    dw_bytes_ = round_up(g.out_c, dk.ct) * (4 + g.kh * nq * dk.wb);
    dw_ = aligned_zeros(dw_bytes_);
    // OIHW with one input channel is exactly [channel][kh][kw].
    dk.pack(g.out_c, g.kh, g.kw, w, dw_.get());
    return;
  }
  if (is_pointwise(g)) {
    path_ = Path::gemm;
    k_.gemm = gemm_kernel_for_weights(k.gemm, w, g.out_c, g.in_c, g.in_c);
    grp_.emplace_back(w, g.out_c, g.in_c, g.in_c, k_.gemm.layout);
    return;
  }
  if (use_igemm && stem_fits(g, k)) {
    // K = kh rows of kc bytes: k = ky*kc + kx*cg + c; the bytes past kw*cg get
    // zero weights (they read the next canvas pixel, whatever it holds). The
    // runner calls k_.igemm: here, the stem kernel.
    k_.igemm = k.stem;
    const size_t kc = round_up(g.kw * cg, k.stem.layout.kr), run = g.kw * cg;
    std::vector<int8_t> m(og * g.kh * kc, 0);
    for (size_t o = 0; o < og; ++o)
      for (size_t ky = 0; ky < g.kh; ++ky)
        for (size_t j = 0; j < run; ++j)
          m[(o * g.kh + ky) * kc + j] = w[((o * cg + j % cg) * g.kh + ky) * g.kw + j / cg];
    path_ = Path::stem;
    stem_kc_ = kc;
    grp_.emplace_back(m.data(), og, g.kh * kc, g.kh * kc, k.stem.layout);  // not w127
    return;
  }
  bool igemm = use_igemm && k.igemm.requant && cg % k.igemm.layout.kr == 0;
  // An indirect GEMM with a w127 layout (avx2) takes the layer only if every
  // group's weights fit it; otherwise the gathered path runs the same ISA's
  // full-range GEMM kernel (below), exact for any weights.
  for (size_t grp = 0; igemm && grp < g.groups; ++grp)
    igemm = weights_fit_layout(w + grp * og * cg * ks, og, cg * ks, cg * ks, k.igemm.layout);
  path_ = igemm ? Path::igemm : Path::gather;
  // One GEMM kernel for every group: the fallback if any group's weights need it.
  // A group's matrix below permutes k within each row, so each panel holds the
  // same weights as the group's OIHW rows.
  if (!igemm)
    for (size_t grp = 0; grp < g.groups && k_.gemm.name == k.gemm.name; ++grp)
      k_.gemm = gemm_kernel_for_weights(k.gemm, w + grp * og * cg * ks, og, cg * ks, cg * ks);
  // Per group, the (og, ks*cg) matrix with k = tap*cg + c (taps in NHWC reading order).
  std::vector<int8_t> m(og * ks * cg);
  for (size_t grp = 0; grp < g.groups; ++grp) {
    for (size_t o = 0; o < og; ++o)
      for (size_t c = 0; c < cg; ++c)
        for (size_t t = 0; t < ks; ++t)
          m[(o * ks + t) * cg + c] = w[(((grp * og + o) * cg + c) * ks) + t];
    grp_.emplace_back(m.data(), og, ks * cg, ks * cg, igemm ? k.igemm.layout : k_.gemm.layout);
  }
}

const char* PackedConv2d::path_name() const {
  switch (path_) {
    case Path::gemm:
      return "gemm";
    case Path::igemm:
      return "igemm";
    case Path::gather:
      return "gather";
    case Path::dwconv:
      return "dwconv";
    case Path::winograd:
      return "winograd";
    case Path::stem:
      return "stem";
  }
  return "";
}

const char* PackedConv2d::kernel_name() const {
  switch (path_) {
    case Path::igemm:
    case Path::stem:
      return k_.igemm.name;
    case Path::dwconv:
      return k_.dwconv.name;
    case Path::winograd:
      return k_.wino.name;
    default:
      return k_.gemm.name;
  }
}

size_t PackedConv2d::bytes() const {
  size_t b = dw_bytes_ + wino_.bytes();
  for (const PackedWeights& p : grp_) b += p.bytes();
  return b;
}

// Runs one call; a struct so it can reach PackedConv2d's internals.
struct ConvRunner {
  const PackedConv2d& p;
  const Conv2dArgs& a;
  const ConvGeometry& g;
  size_t oh, ow;
  Epilogue ep;

  size_t threads;  // 1 when the problem is too small to pay for waking other threads

  ConvRunner(const PackedConv2d& pw, const Conv2dArgs& args)
      : p(pw),
        a(args),
        g(pw.g_),
        oh(conv_out_size(args.h, g.kh, g.stride_h, g.dil_h, g.pad_top, g.pad_bottom, "height")),
        ow(conv_out_size(args.w, g.kw, g.stride_w, g.dil_w, g.pad_left, g.pad_right, "width")),
        ep(make_epilogue(g.out_c, args)) {
    // Below ~1M MACs (a few microseconds) handing tasks to busy threads costs more
    // than it saves (as in the Linear drivers). A depthwise MAC costs about four
    // times a GEMM's (row transforms, one tap group per instruction), so depthwise
    // layers split from 256K: MobileNet's 14x14 and 7x7 ones (0.4-0.7M MACs,
    // 15-30 us on one thread).
    const size_t macs = a.batch * oh * ow * g.out_c * (g.in_c / g.groups) * g.kh * g.kw;
    const size_t min_macs = size_t{1} << (pw.path_ == PackedConv2d::Path::dwconv ? 18 : 20);
    threads = macs < min_macs ? 1 : static_cast<size_t>(get_num_threads());
  }

  template <class Fn>
  void for_tasks(size_t ntasks, const Fn& fn) const {
    if (threads == 1) {
      for (size_t t = 0; t < ntasks; ++t) fn(t);
    } else {
      parallel_for(ntasks, fn);
    }
  }

  void run() {
    switch (p.path_) {
      case PackedConv2d::Path::gemm:
        return run_gemm();
      case PackedConv2d::Path::dwconv:
        return run_dwconv();
      case PackedConv2d::Path::winograd:
        return run_winograd();
      default:
        return run_indirect();
    }
  }

  void run_gemm() {
    StaticLinearArgs la{a.batch * a.h * a.w, a.x,    g.in_c, a.xs, a.xz,
                        a.w_scale,           a.bias, a.ys,   a.yz, a.out_min,
                        a.out_max,           a.y,    g.out_c};
    linear_static(p.grp_[0], la, p.k_.gemm);
  }

  // Entries for tiles [t0, t1) of mr output pixels of one image:
  // ind[((t - t0)*ks + tap)*mr + r] for pixel t*mr + r (past the last pixel, the
  // last pixel again). Offsets are from the image's first pixel, channel 0.
  void build_indirection(size_t t0, size_t t1, size_t mr, size_t* ind) const {
    if (p.path_ == PackedConv2d::Path::stem) return build_stem_rows(t0, t1, mr, ind);
    const size_t ks = g.kh * g.kw, m_img = oh * ow;
    for (size_t t = t0; t < t1; ++t)
      for (size_t r = 0; r < mr; ++r) {
        const size_t m = std::min(t * mr + r, m_img - 1);
        const size_t oy = m / ow, ox = m % ow;
        for (size_t ky = 0; ky < g.kh; ++ky) {
          // Unsigned wrap-around: rows above the image become huge and fail `< h`.
          const size_t iy = oy * g.stride_h + ky * g.dil_h - g.pad_top;
          for (size_t kx = 0; kx < g.kw; ++kx) {
            const size_t ix = ox * g.stride_w + kx * g.dil_w - g.pad_left;
            ind[((t - t0) * ks + ky * g.kw + kx) * mr + r] =
                iy < a.h && ix < a.w ? (iy * a.w + ix) * g.in_c : kPad;
          }
        }
      }
  }

  // The stem path's table: one entry per kernel row,
  // ind[((t - t0)*kh + ky)*mr + r] = the canvas offset of the row's first tap.
  void build_stem_rows(size_t t0, size_t t1, size_t mr, size_t* ind) const {
    const size_t m_img = oh * ow, pitch = (a.w + g.pad_left + g.pad_right) * g.in_c;
    for (size_t t = t0; t < t1; ++t)
      for (size_t r = 0; r < mr; ++r) {
        const size_t m = std::min(t * mr + r, m_img - 1);
        const size_t oy = m / ow, ox = m % ow;
        for (size_t ky = 0; ky < g.kh; ++ky)
          ind[((t - t0) * g.kh + ky) * mr + r] =
              (oy * g.stride_h + ky * g.dil_h) * pitch + ox * g.stride_w * g.in_c;
      }
  }

  // The stem path's canvas: each image with its padding built in (rows of
  // (pad_left + w + pad_right) pixels, pad_top + h + pad_bottom of them, the
  // padding holding the zero point), so every kernel row the kernel reads is
  // kw*C adjacent bytes plus at most kr - 1 bytes of the pixels after it
  // (kCanvasSlack bytes after the last row). canvas_pitch() bytes a row.
  static constexpr size_t kCanvasSlack = 64;
  size_t canvas_pitch() const { return (g.pad_left + a.w + g.pad_right) * g.in_c; }
  size_t canvas_rows() const { return g.pad_top + a.h + g.pad_bottom; }

  // Row r of image n's canvas into dst (canvas_pitch() bytes).
  void fill_canvas_row(size_t n, size_t r, uint8_t* dst) const {
    const size_t c = g.in_c, pl = g.pad_left, w = a.w, h = a.h, plane = h * w;
    const uint8_t xz = static_cast<uint8_t>(a.xz);
    const size_t iy = r - g.pad_top;  // wraps above the image: fails < h
    if (iy >= h) {
      std::memset(dst, xz, canvas_pitch());
      return;
    }
    const uint8_t* src = a.x + n * plane * c;
    std::memset(dst, xz, pl * c);
    uint8_t* row = dst + pl * c;
    if (!a.nchw) {
      std::memcpy(row, src + iy * w * c, w * c);
    } else if (c == 3) {
      interleave3(src + iy * w, src + plane + iy * w, src + 2 * plane + iy * w, w, row);
    } else {
      for (size_t ch = 0; ch < c; ++ch) {
        const uint8_t* s = src + ch * plane + iy * w;
        for (size_t ix = 0; ix < w; ++ix) row[ix * c + ch] = s[ix];
      }
    }
    std::memset(row + w * c, xz, g.pad_right * c);
  }

  // The whole batch's canvas, built once and read by every task (one thread: no
  // byte is filled twice). Returns it; `img` is one image's size.
  const uint8_t* build_canvas(size_t* img) const {
    const size_t pitch = canvas_pitch(), hp = canvas_rows();
    *img = hp * pitch;
    thread_local Scratch canvas_buf;  // the calling thread's; read by the tasks below
    uint8_t* canvas = canvas_buf.get(a.batch * *img + kCanvasSlack);
    for_tasks(a.batch, [&](size_t n) {
      for (size_t r = 0; r < hp; ++r) fill_canvas_row(n, r, canvas + (n * hp + r) * pitch);
    });
    return canvas;
  }

  // With several threads, each task fills just the canvas rows its strip of
  // output pixels reads, in its own buffer: a shared canvas is filled by every
  // core and then read by every core, and at batch 1 those cross-core reads made
  // the stem scale 1.35-1.45x on 2 threads. Returns the base the indirection
  // table's offsets (from the image's first canvas row) apply to.
  const uint8_t* own_canvas_rows(size_t n, size_t m0, size_t rows) const {
    const size_t pitch = canvas_pitch();
    const size_t r0 = (m0 / ow) * g.stride_h;
    const size_t r1 = ((m0 + rows - 1) / ow) * g.stride_h + (g.kh - 1) * g.dil_h + 1;
    thread_local Scratch rows_buf;
    uint8_t* buf = rows_buf.get((r1 - r0) * pitch + kCanvasSlack);
    for (size_t r = r0; r < r1; ++r) fill_canvas_row(n, r, buf + (r - r0) * pitch);
    // Offsets below r0 * pitch are never read: the base may point before buf.
    return reinterpret_cast<const uint8_t*>(reinterpret_cast<uintptr_t>(buf) - r0 * pitch);
  }

  // The whole image's table, from the cache or built (and cached) now; null if
  // it is too large to keep.
  // ks: entries per output pixel (kernel taps; the stem path's kernel rows).
  std::shared_ptr<const PackedConv2d::Indirection> cached_indirection(size_t mr, size_t ks) const {
    const size_t tiles = (oh * ow + mr - 1) / mr;
    if (tiles * mr * ks * sizeof(size_t) > kMaxIndirectionBytes) return nullptr;
    {
      std::lock_guard<std::mutex> lock(p.ind_mu_);
      if (p.ind_ && p.ind_->h == a.h && p.ind_->w == a.w) return p.ind_;
    }
    auto ind = std::make_shared<PackedConv2d::Indirection>();
    ind->h = a.h;
    ind->w = a.w;
    ind->entries.resize(tiles * mr * ks);
    build_indirection(0, tiles, mr, ind->entries.data());
    std::lock_guard<std::mutex> lock(p.ind_mu_);
    p.ind_ = ind;
    return ind;
  }

  // igemm and gather: tasks over (image, strip of output pixels, group).
  void run_indirect() {
    const bool stem = p.path_ == PackedConv2d::Path::stem;
    const bool igemm = stem || p.path_ == PackedConv2d::Path::igemm;
    const size_t mr = igemm ? p.k_.igemm.mr : p.k_.gemm.mr;
    const size_t cg = g.in_c / g.groups, og = g.out_c / g.groups;
    // stem: the kernel's taps are kernel rows of kc canvas bytes
    const size_t ks = stem ? g.kh : g.kh * g.kw, kc = stem ? p.stem_kc_ : cg;
    size_t img = a.h * a.w * g.in_c;            // bytes from one image to the next
    const bool own_rows = stem && threads > 1;  // each task fills its rows (own_canvas_rows)
    const uint8_t* x = stem && !own_rows ? build_canvas(&img) : a.x;
    const size_t kp = p.grp_[0].kp();
    const size_t m_img = oh * ow;
    // Strip rows, whole tiles. When each task fills its own canvas rows, a strip is
    // a band of whole output rows (about 4 strips per thread in all), so that the
    // kh - stride canvas rows two bands share are filled twice only a few times.
    size_t mb = mr * std::max<size_t>(1, 64 / mr);
    if (own_rows) {
      const size_t per_image = std::max<size_t>(1, (4 * threads + a.batch - 1) / a.batch);
      mb = round_up(((oh + per_image - 1) / per_image) * ow, mr);
    }
    const size_t strips = (m_img + mb - 1) / mb;
    // Columns per pass: enough to amortize the strip, few enough that the
    // group's weight block stays in L2.
    const size_t nb = std::min(og, round_up(std::max<size_t>(64, (256 * 1024) / kp), 64));
    // The zero-point row: padding reads it (at least kc readable bytes).
    std::vector<uint8_t> zero(round_up(g.in_c, 64) + 64, static_cast<uint8_t>(a.xz));
    const std::shared_ptr<const PackedConv2d::Indirection> cached =
        igemm ? cached_indirection(mr, ks) : nullptr;
    // Too few strips to keep every thread busy (batch 1 at 14x14 and 7x7: 4 and 1
    // strips) also cuts the output channels, in chunks of whole passes' alignment
    // (64 columns: a multiple of every kernel's nr).
    const size_t base_tasks = a.batch * strips * g.groups;
    size_t splits = 1;
    if (threads > 1 && base_tasks < 4 * threads)
      splits = std::min((og + 63) / 64, (4 * threads + base_tasks - 1) / base_tasks);
    const size_t cw = round_up((og + splits - 1) / splits, 64);
    for_tasks(base_tasks * splits, [&](size_t task_id) {
      const size_t c0 = (task_id % splits) * cw, c1 = std::min(og, c0 + cw);
      if (c0 >= c1) return;
      const size_t task = task_id / splits;
      const size_t grp = task % g.groups, s = (task / g.groups) % strips;
      const size_t n = task / (g.groups * strips);
      const size_t m0 = s * mb, rows = std::min(mb, m_img - m0);
      const size_t tiles = (rows + mr - 1) / mr, t0 = m0 / mr;
      thread_local Scratch ind_buf, a_buf;
      const uint8_t* base = own_rows ? own_canvas_rows(n, m0, rows) : x + n * img + grp * cg;
      uint8_t* y0 = a.y + (n * m_img + m0) * g.out_c + grp * og;
      const PackedWeights& w = p.grp_[grp];
      if (igemm) {
        const size_t* ind;
        if (cached) {
          ind = cached->entries.data() + t0 * ks * mr;
        } else {
          size_t* built = reinterpret_cast<size_t*>(ind_buf.get(tiles * ks * mr * sizeof(size_t)));
          build_indirection(t0, t0 + tiles, mr, built);
          ind = built;
        }
        for (size_t n0 = c0; n0 < c1; n0 += nb) {
          const RequantEpilogue e = ep.at(grp * og + n0, a);
          for (size_t t = 0; t < tiles; ++t)
            p.k_.igemm.requant(std::min(mr, rows - t * mr), std::min(nb, c1 - n0), kc, ks,
                               ind + t * ks * mr, base, kPad, zero.data(), w.panel(n0), a.xz,
                               y0 + t * mr * g.out_c + n0, g.out_c, &e);
        }
        return;
      }
      uint8_t* abuf = a_buf.get(mb * kp + kGatherSlack);
      gather_strip(m0, rows, kp, base, zero.data(), abuf);
      int32_t zps[64];
      std::fill(zps, zps + 64, a.xz);
      for (size_t n0 = c0; n0 < c1; n0 += nb) {
        const RequantEpilogue e = ep.at(grp * og + n0, a);
        for (size_t t = 0; t < tiles; ++t)
          p.k_.gemm.requant(std::min(mr, rows - t * mr), std::min(nb, c1 - n0), kp,
                            abuf + t * mr * kp, kp, w.panel(n0), zps, y0 + t * mr * g.out_c + n0,
                            g.out_c, &e);
      }
    });
  }

  // The gathered path's A rows for output pixels [m0, m0 + rows) of one image:
  // row r (kp bytes) is the concatenation over taps (ky, kx) of the cg bytes the
  // tap reads (zero points for padding), then zeros up to kp. Positions are
  // computed here rather than read from the indirection table (8 bytes per tap).
  // With one group and no horizontal dilation, the kw taps of a kernel row are
  // adjacent pixels: an in-bounds kernel row is one run of kw*cg bytes. With few
  // channels (a 1-channel 3x3 conv has 1-byte taps) the copies are most of the
  // cost, so short runs are copied as one kGatherSlack-byte move when the input
  // has the bytes: the excess lands where the next run, the zero tail or the
  // next row is written later (abuf has kGatherSlack bytes past the last row).
  void gather_strip(size_t m0, size_t rows, size_t kp, const uint8_t* base, const uint8_t* zero,
                    uint8_t* abuf) const {
    static const uint8_t zeros[kGatherSlack] = {};
    // Locals, not members: every byte store may alias g and a, so the compiler
    // would reload members after each one (it did: 25 instructions per run).
    const size_t kh = g.kh, kw = g.kw, sh = g.stride_h, sw = g.stride_w, dh = g.dil_h;
    const size_t dw = g.dil_w, pt = g.pad_top, pl = g.pad_left, h = a.h, w = a.w, c = g.in_c;
    const size_t cg = c / g.groups, run = kw * cg, tail = kp - kh * kw * cg;
    const size_t span = (kw - 1) * dw, row_bytes = w * c, out_w = ow;
    const bool runs = g.groups == 1 && dw == 1, short_runs = run <= kGatherSlack;
    const uint8_t* end = a.x + a.batch * h * row_bytes;  // the input ends here
    size_t oy = m0 / out_w, ox = m0 % out_w;
    for (size_t r = 0; r < rows; ++r) {
      uint8_t* dst = abuf + r * kp;
      // Unsigned wrap-around: positions left of / above the image become huge.
      const size_t ix0 = ox * sw - pl;
      const bool cols_in = runs && ix0 < w && ix0 + span < w;
      for (size_t ky = 0; ky < kh; ++ky) {
        const size_t iy = oy * sh + ky * dh - pt;
        const uint8_t* row = base + iy * row_bytes;
        if (iy < h && cols_in) {
          const uint8_t* src = row + ix0 * c;
          if (short_runs && end - src >= static_cast<ptrdiff_t>(kGatherSlack))
            std::memcpy(dst, src, kGatherSlack);
          else
            copy_bytes(dst, src, run);
          dst += run;
          continue;
        }
        for (size_t kx = 0; kx < kw; ++kx, dst += cg) {
          const size_t ix = ix0 + kx * dw;
          copy_bytes(dst, iy < h && ix < w ? row + ix * c : zero, cg);
        }
      }
      if (tail <= kGatherSlack) {
        std::memcpy(dst, zeros, kGatherSlack);
      } else {
        std::memset(dst, 0, tail);
      }
      if (++ox == out_w) {
        ox = 0;
        ++oy;
      }
    }
  }

  // Winograd F(2x2, 3x3): tasks over (block of tiles, range of output channels). A
  // task transforms its tiles' 4x4 input patches once (V: 16 positions x tiles x
  // channels, int16, L2-sized), then runs the kernel on mr tiles at a time across
  // column blocks whose transformed weights stay in L2.
  void run_winograd() {
    const WinogradKernel& k = p.k_.wino;
    const size_t c = g.in_c, oc = g.out_c, kc = p.wino_.kc(), cp = round_up(c, 16);
    const size_t ldv = cp;
    const size_t tw = (ow + 1) / 2, per_img = ((oh + 1) / 2) * tw, tiles = a.batch * per_img;
    const size_t mr = k.mr, nr = k.nr;
    // Tiles per block: V of about 128 KiB.
    size_t tb = std::max<size_t>(1, (128 * 1024) / (16 * ldv * sizeof(int16_t)) / mr) * mr;
    tb = std::min(tb, round_up(tiles, mr));
    // Columns per kernel pass: transformed weights (16 * kc * nb int16) of about 256 KiB.
    const size_t nb =
        std::min(round_up(oc, nr), std::max<size_t>(1, (256 * 1024) / (32 * kc) / nr) * nr);
    const size_t blocks = (tiles + tb - 1) / tb;
    // Too few blocks for the threads: split the columns too (each part transforms
    // the block's inputs again; cheap next to its GEMM).
    size_t splits = 1;
    if (threads > 1 && blocks < 4 * threads)
      splits = std::min((oc + nr - 1) / nr, (4 * threads + blocks - 1) / blocks);
    const size_t cw = round_up((oc + splits - 1) / splits, nr);
    std::vector<uint8_t> zero(cp + 64, static_cast<uint8_t>(a.xz));
    const size_t pt = g.pad_top, pl = g.pad_left;
    for_tasks(blocks * splits, [&](size_t task) {
      const size_t b = task / splits, c0 = (task % splits) * cw, c1 = std::min(oc, c0 + cw);
      if (c0 >= c1) return;
      const size_t t0 = b * tb, nt = std::min(tb, tiles - t0);
      thread_local Scratch v_buf, y_buf;
      int16_t* v = reinterpret_cast<int16_t*>(v_buf.get(16 * tb * ldv * sizeof(int16_t)));
      uint8_t** yp = reinterpret_cast<uint8_t**>(y_buf.get(8 * tb * sizeof(uint8_t*)));
      uint8_t** ybase = yp + 4 * tb;
      const size_t v_pos = tb * ldv;
      for (size_t t = 0; t < nt; ++t) {
        const size_t gt = t0 + t, n = gt / per_img, ty = (gt % per_img) / tw,
                     tx = gt % per_img % tw;
        const uint8_t* rows[16];
        for (size_t i = 0; i < 4; ++i) {
          const size_t iy = 2 * ty + i - pt;  // wraps above the image: fails < h
          for (size_t j = 0; j < 4; ++j) {
            const size_t ix = 2 * tx + j - pl;
            rows[4 * i + j] =
                iy < a.h && ix < a.w ? a.x + ((n * a.h + iy) * a.w + ix) * c : zero.data();
          }
        }
        k.input(c, cp, rows, a.xz, v + t * ldv, v_pos);
        for (size_t q = 0; q < 4; ++q) {
          const size_t oy = 2 * ty + q / 2, ox = 2 * tx + q % 2;
          ybase[4 * t + q] = oy < oh && ox < ow ? a.y + ((n * oh + oy) * ow + ox) * oc : nullptr;
        }
      }
      for (size_t n0 = c0; n0 < c1; n0 += nb) {
        for (size_t i = 0; i < 4 * nt; ++i) yp[i] = ybase[i] ? ybase[i] + n0 : nullptr;
        const RequantEpilogue e = ep.at(n0, a);
        const size_t nc = std::min(nb, c1 - n0);
        for (size_t t = 0; t < nt; t += mr)
          k.gemm(std::min(mr, nt - t), nc, kc, v + t * ldv, ldv, v_pos, p.wino_.panel(n0),
                 yp + 4 * t, &e);
      }
    });
  }

  // Depthwise: tasks over (image, band of output rows). Each task keeps the
  // transformed input rows it needs in a small cache keyed by input row.
  void run_dwconv() {
    const DwconvKernel& k = p.k_.dwconv;
    const size_t c = g.out_c, mult = g.out_c / g.in_c;
    const size_t nq = (g.kw + k.g - 1) / k.g;
    const size_t slots = (g.kh - 1) * g.dil_h + 1;  // rows one output row spans
    const DwRowGeometry rg{c, a.w, ow, g.kw, nq, g.stride_w, g.dil_w, g.pad_left};
    // tb == 0: a direct kernel's row is a 64-byte header, the padded row, and
    // 64 bytes its last partial channel block may read.
    const size_t t_bytes =
        k.tb ? ow * nq * round_up(c, k.ct) * k.tb : round_up(64 + dw_padded_width(rg) * c + 64, 64);
    // Bands of output rows per image: one thread takes whole images; several get
    // enough bands for 4 tasks per thread, but each band re-transforms the
    // (kh - 1) * dil_h input rows it shares with the band above, so small images
    // (14x14: 2-row bands transformed 4 rows each) get one band per thread, larger
    // ones bands of at least 8 rows.
    const size_t per_image =
        threads == 1 ? 1
                     : std::min({oh, std::max<size_t>(1, (4 * threads + a.batch - 1) / a.batch),
                                 threads * std::max<size_t>(1, oh / (8 * threads))});
    const size_t band = (oh + per_image - 1) / per_image;
    const RequantEpilogue e = ep.at(0, a);
    for_tasks(a.batch * per_image, [&](size_t task) {
      const size_t n = task / per_image, oy0 = (task % per_image) * band;
      const size_t oy1 = std::min(oh, oy0 + band);
      if (oy0 >= oy1) return;
      thread_local Scratch t_buf, x_buf;
      thread_local std::vector<size_t> tag;
      thread_local std::vector<const uint8_t*> rows;
      uint8_t* tb = t_buf.get((slots + 1) * t_bytes);
      uint8_t* pad_row = tb + slots * t_bytes;
      uint8_t* expanded = mult > 1 ? x_buf.get(a.w * c) : nullptr;
      tag.assign(slots, SIZE_MAX);
      rows.resize(g.kh);
      k.transform(&rg, nullptr, static_cast<uint8_t>(a.xz), pad_row);
      for (size_t oy = oy0; oy < oy1; ++oy) {
        for (size_t ky = 0; ky < g.kh; ++ky) {
          const size_t iy = oy * g.stride_h + ky * g.dil_h - g.pad_top;  // wraps if above
          if (iy >= a.h) {
            rows[ky] = pad_row;
            continue;
          }
          uint8_t* slot = tb + (iy % slots) * t_bytes;
          if (tag[iy % slots] != iy) {
            const uint8_t* src = a.x + (n * a.h + iy) * a.w * g.in_c;
            if (mult > 1) src = expand_row(src, mult, expanded);
            k.transform(&rg, src, static_cast<uint8_t>(a.xz), slot);
            tag[iy % slots] = iy;
          }
          rows[ky] = slot;
        }
        k.row(c, ow, g.kh, nq, rows.data(), p.dw_.get(), a.xz, a.y + (n * oh + oy) * ow * c, c, &e);
      }
    });
  }

  // Channel multiplier m: output channel ci*m + j reads input channel ci, so
  // repeat each input channel m times and run the multiplier-1 kernel.
  const uint8_t* expand_row(const uint8_t* src, size_t m, uint8_t* dst) const {
    for (size_t i = 0; i < a.w * g.in_c; ++i) std::memset(dst + i * m, src[i], m);
    return dst;
  }
};

void conv2d_static(const PackedConv2d& w, const Conv2dArgs& a) {
  if (a.batch == 0) return;
  if (a.nchw && w.path() != PackedConv2d::Path::stem) {
    thread_local Scratch nhwc_buf;
    const size_t c = w.geometry().in_c, pixels = a.h * a.w;
    uint8_t* x = nhwc_buf.get(a.batch * c * pixels);
    nchw_to_nhwc_u8(a.x, x, a.batch, c, pixels);
    Conv2dArgs b = a;
    b.x = x;
    b.nchw = false;
    ConvRunner(w, b).run();
    return;
  }
  ConvRunner(w, a).run();
}

}  // namespace npq
