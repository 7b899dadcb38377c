// conv_transpose2d kernel bodies, compiled once per instruction set (see simd.h).
//
// Every path is a GEMM with a register-tiled micro-kernel: MR values of one operand broadcast (straight from
// memory into the FMA) times NV vectors of the other, MR x NV accumulators in registers (AVX-512: 8 x 3).
// The path is chosen per call by shape (GENRT_CONV_TRANSPOSE_ALGO forces one, for tests and benchmarks):
//
// Phase GEMM (the default). Output rows oh = r + sh*j of one residue r (mod sh) receive only the kernel rows kh
//   with (r + ph - kh*dh) = 0 (mod sh), from input rows ih = j + base[kh]; likewise for columns. So the strided
//   transposed convolution splits into sh*sw dense convolutions ("phases"), with no multiplications by the zeros
//   a strided upsampling would insert. Each phase is an implicit GEMM C[C_out x pixels] = A[C_out x K] B[K x
//   pixels], K = taps * C_in/groups. A (the weights of one phase) is packed as [C_out/MR][tap][C_in][MR], once
//   per call or, with a WeightCache, once for all calls; the broadcast operand is A, the vectors are output
//   pixels, and the epilogue (bias, scale, shift, activation) is applied to the accumulators in registers, each
//   value stored once, straight to its phase position in the output. Tasks are ordered so that the phases of the
//   same input rows run back to back on one thread. Three ways to feed B:
//   - direct: the input, with its rows zero-padded, is read in place; a vector is W consecutive pixels of one
//     phase row (chosen when phase rows fill the vectors well, and for few output channels, where packing would
//     not be amortised). Output rows whose taps leave the input are grouped in classes that skip those taps.
//   - flat: phase width == input width, narrower than a vector (the 4x4 and 8x8 layers): a vector is W
//     consecutive pixels of the flattened phase plane, which for every tap are W consecutive input elements;
//     lanes whose tap leaves the input are masked to zero.
//   - packed: otherwise, a B panel [K][NR] per tile of NR pixels (copied as row runs), reused by every C_out
//     block; pixels are grouped in classes of equal valid tap ranges, so no zero is multiplied at the borders.
//
// Column GEMM (few input pixels: batch 1 at small spatial sizes, or a 1x1 input). Packing the weights would
//   cost more than the GEMM, so they are read in place: cols[(co, kh, kw)][pixel] = w^T x with w the row-major
//   (C_in, C_out/groups*kH*kW) matrix it already is, MR consecutive weight columns (one cache line) broadcast,
//   the pixels as vectors (x^T packed, L1-resident), in K blocks so each weight row streams in order with
//   software prefetch. (One pixel: a GEMV streaming each weight row in order; two: the weights are the vectors,
//   in wide tiles.) The columns are scatter-added to the output (threads own disjoint output channels, so no
//   races) and the epilogue runs over each thread's channels while they are in cache. With a WeightCache the
//   weights are kept as contiguous per-tile panels instead (built once), and narrow inputs where flat mode
//   applies take the phase GEMM from two pixels up, its packing being free then.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "conv_transpose2d.h"
#include "conv_transpose2d_epilogue.h"
#include "parallel.h"
#include "simd.h"

namespace genrt {
namespace GENRT_ISA_NS {
namespace {

using conv_transpose2d_detail::Epilogue;

template <typename T>
constexpr int W = Vec<T>::size;

#if GENRT_VEC_BYTES >= 64
#ifndef GENRT_CT_MR
#define GENRT_CT_MR 8
#define GENRT_CT_NV 3
#endif
constexpr int kMR = GENRT_CT_MR;  // 32 zmm registers: MR x NV accumulators + NV B vectors + 1 broadcast
static_assert(kMR <= 12, "the tile pickers dispatch remainders up to 11 rows");
constexpr int kNV = GENRT_CT_NV;
#elif GENRT_VEC_BYTES >= 32
constexpr int kMR = 6;  // 16 ymm registers: 6 x 2 accumulators + 2 + 1
constexpr int kNV = 2;
#else
constexpr int kMR = 4;
constexpr int kNV = 2;
#endif

template <typename T>
constexpr int NR = kNV * W<T>;

// Packed weights of one layout: from the problem's WeightCache (built there on first use, kept for later calls)
// or, without a cache, built into `store` for this call. The key names the layout (`name`, which carries the
// layout's own parameters) and everything about the weights and the problem it depends on.
template <typename T>
const T* packed_weights(const ConvTranspose2dProblem& P, const std::string& name, size_t count, std::vector<T>& store,
                        const std::function<void(T*)>& fill) {
  if (!P.cache) {
    store.resize(count);
    fill(store.data());
    return store.data();
  }
#define GENRT_CT_STR2(x) #x
#define GENRT_CT_STR(x) GENRT_CT_STR2(x)
  std::string key = name + " " GENRT_CT_STR(GENRT_ISA_NS) " f" + std::to_string(8 * sizeof(T));
  for (int64_t v : {P.Cin, P.Cout, P.kH, P.kW, P.groups, P.sh, P.sw, P.ph, P.pw, P.dh, P.dw})
    key += " " + std::to_string(v);
  return static_cast<const T*>(
      P.cache->get(key, count * sizeof(T), [&](void* buffer) { fill(static_cast<T*>(buffer)); }));
}

// ---------------------------------------------------------------------------------------------------------------
// Micro-kernel: acc[m][v] += sum_k a[k*lda + m] * b[k*ldb + v*W .. +W]

// PF > 0: prefetch the B row PF rows ahead (B read in place with a large row stride, where the hardware
// prefetchers do not follow).
template <typename T, int MR, int NV, int PF = 0>
__attribute__((always_inline)) inline void micro(int64_t K, const T* __restrict a, int64_t lda,
                                                 const T* __restrict b, int64_t ldb, vec_t<T> (&acc)[MR][NV]) {
  for (int64_t k = 0; k < K; ++k) {
    if constexpr (PF > 0) {
      for (int l = 0; l < NV * W<T>; l += 64 / int(sizeof(T))) __builtin_prefetch(b + PF * ldb + l);
    }
    vec_t<T> bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = load<T>(b + v * W<T>);
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) {
      const vec_t<T> av = splat<T>(a[m]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[m][v] += av * bv[v];
    }
    a += lda;
    b += ldb;
  }
}

// Same with one B pointer per vector: acc[m][v] += sum_k a[k*lda + m] * b[v][k*ldb .. +W]
template <typename T, int MR, int NV>
__attribute__((always_inline)) inline void micro_rows(int64_t K, const T* __restrict a, int64_t lda,
                                                      const T* const* bp, int64_t ldb, vec_t<T> (&acc)[MR][NV]) {
  const T* b[NV];
  for (int v = 0; v < NV; ++v) b[v] = bp[v];
  for (int64_t k = 0; k < K; ++k) {
    vec_t<T> bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = load<T>(b[v] + k * ldb);
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) {
      const vec_t<T> av = splat<T>(a[m]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[m][v] += av * bv[v];
    }
    a += lda;
  }
}

// micro_rows with a lane mask per vector (lanes whose tap falls outside the input read as zero).
template <typename T, int MR, int NV>
__attribute__((always_inline)) inline void micro_rows_masked(int64_t K, const T* __restrict a, int64_t lda,
                                                             const T* const* bp, int64_t ldb,
                                                             const ivec_t<T>* mask, vec_t<T> (&acc)[MR][NV]) {
  const T* b[NV];
  ivec_t<T> mk[NV];
  for (int v = 0; v < NV; ++v) {
    b[v] = bp[v];
    mk[v] = mask[v];
  }
  for (int64_t k = 0; k < K; ++k) {
    vec_t<T> bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = (vec_t<T>)((ivec_t<T>)load<T>(b[v] + k * ldb) & mk[v]);
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) {
      const vec_t<T> av = splat<T>(a[m]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[m][v] += av * bv[v];
    }
    a += lda;
  }
}

struct Seg {
  int64_t a_off;  // first K row of the segment in the packed weights
  int64_t len;
};

// ---------------------------------------------------------------------------------------------------------------
// Phase GEMM

struct Phase1D {
  int64_t r = 0, n_out = 0;
  std::vector<int64_t> k, base;  // kernel index and input offset of each tap
  struct Cls {
    int64_t j0, j1, t0, t1;  // output index range [j0, j1) of this phase whose valid taps are [t0, t1)
  };
  std::vector<Cls> cls;
};

Phase1D make_phase(int64_t r, int64_t s, int64_t pad, int64_t dil, int64_t ks, int64_t in, int64_t out) {
  Phase1D p;
  p.r = r;
  p.n_out = r < out ? (out - r + s - 1) / s : 0;
  for (int64_t kk = 0; kk < ks; ++kk) {
    const int64_t v = r + pad - kk * dil;
    if (((v % s) + s) % s == 0) {
      p.k.push_back(kk);
      p.base.push_back(v / s);  // exact
    }
  }
  const int64_t T = int64_t(p.k.size());
  for (int64_t j = 0; j < p.n_out; ++j) {
    int64_t t0 = T, t1 = T;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t i = p.base[t] + j;
      if (i >= 0 && i < in) {
        if (t0 == T) t0 = t;
        t1 = t + 1;
      }
    }
    if (t0 == T) t0 = t1 = 0;
    if (!p.cls.empty() && p.cls.back().t0 == t0 && p.cls.back().t1 == t1 && p.cls.back().j1 == j)
      p.cls.back().j1 = j + 1;
    else
      p.cls.push_back({j, j + 1, t0, t1});
  }
  return p;
}

// Flat mode's condition: every column phase has as many outputs as the input has columns (make_phase's n_out).
bool flat_applies(const ConvTranspose2dProblem& P) {
  for (int64_t r = 0; r < std::min(P.sw, P.Wo); ++r)
    if ((P.Wo - r + P.sw - 1) / P.sw != P.W) return false;
  return true;
}

template <typename T>
struct PhaseCtx {
  const ConvTranspose2dProblem* P;
  const T* x;
  T* y;
  Epilogue<T> ep;
  int64_t Cin_g, Cout_g, HW, HWo, n_cb;
  std::vector<Phase1D> ph_h, ph_w;
  std::vector<const T*> wpack;  // per (phase, group): [n_cb][Th][Tw][Cin_g][kMR]
  std::vector<T> wstore;        // the packed weights when the problem has no cache
  // Direct mode: x with its rows zero-padded to Wp (Lpad on the left), [N][C_in][H][Wp] plus slack.
  T* xpad = nullptr;
  int64_t Wp = 0, Lpad = 0, HWp = 0, nvt = 0;
};

struct Task {
  int32_t rh, rw, ch, cw;
  int64_t g, q0, cb0, cb1;
};

template <typename T, int MR, int NV>
void phase_tile(const PhaseCtx<T>& C, const Seg* segs, int nseg, const T* apanel, const T* bpanel, int64_t co0,
                const int64_t* out_off, int nvalid) {
  vec_t<T> acc[MR][NV];
  for (int m = 0; m < MR; ++m)
    for (int v = 0; v < NV; ++v) acc[m][v] = splat<T>(0);
  const T* b = bpanel;
  for (int s = 0; s < nseg; ++s) {
    micro<T, MR, NV>(segs[s].len, apanel + segs[s].a_off * kMR, kMR, b, NR<T>, acc);
    b += segs[s].len * NR<T>;
  }
  T tmp[NV * W<T>];
  for (int m = 0; m < MR; ++m) {
    const int64_t c = co0 + m;
    for (int v = 0; v < NV; ++v) store<T>(tmp + v * W<T>, C.ep.apply(acc[m][v], c));
    T* yc = C.y + c * C.HWo;
    for (int l = 0; l < nvalid; ++l) yc[out_off[l]] = tmp[l];
  }
}

template <typename T>
using PhaseTileFn = void (*)(const PhaseCtx<T>&, const Seg*, int, const T*, const T*, int64_t, const int64_t*, int);

// Register-tile dispatch, shared by the tile families below. A family names its micro-kernel instantiations
// fn<MR, NV> and whether it has the wide (up to 4 vectors per row) variants; pick_tile turns the tile height mr
// (1..kMR) and width nv that the blocking chose at run time into the matching instantiation.
template <typename Family, int MR>
typename Family::Fn tile_for_nv(int nv) {
  if constexpr (Family::wide) {
    // nv <= max(kNV, kNVwide); kNVwide (4) only with MR <= 4
    switch (nv) {
      case 1: return Family::template fn<MR, 1>;
#if GENRT_VEC_BYTES >= 64
      case 3: return Family::template fn<MR, 3>;
      case 4: return Family::template fn<MR, (MR <= 4 ? 4 : 3)>;
#endif
      default: return Family::template fn<MR, 2>;
    }
  } else {
    if constexpr (kNV >= 2) {
      if (nv >= 2) return Family::template fn<MR, kNV>;
    }
    (void)nv;
    return Family::template fn<MR, 1>;
  }
}

template <typename Family>
typename Family::Fn pick_tile(int mr, int nv) {
  switch (mr) {
    case 1: return tile_for_nv<Family, 1>(nv);
    case 2: return tile_for_nv<Family, 2>(nv);
    case 3: return tile_for_nv<Family, 3>(nv);
#if GENRT_VEC_BYTES >= 32
    case 4: return tile_for_nv<Family, 4>(nv);
    case 5: return tile_for_nv<Family, 5>(nv);
#endif
#if GENRT_VEC_BYTES >= 64
    case 6: return tile_for_nv<Family, 6>(nv);
    case 7: return tile_for_nv<Family, 7>(nv);
#if GENRT_CT_MR > 8
    case 8: return tile_for_nv<Family, 8>(nv);
    case 9: return tile_for_nv<Family, 9>(nv);
    case 10: return tile_for_nv<Family, 10>(nv);
    case 11: return tile_for_nv<Family, 11>(nv);
#endif
#endif
    default: return tile_for_nv<Family, kMR>(nv);
  }
}

template <typename T>
struct PhaseTiles {
  using Fn = PhaseTileFn<T>;
  static constexpr bool wide = false;
  template <int MR, int NV>
  static constexpr Fn fn = &phase_tile<T, MR, NV>;
};

template <typename T>
void pack_phase_weights(PhaseCtx<T>& C, const T* w, int threads) {
  const ConvTranspose2dProblem& P = *C.P;
  const int64_t nph_h = int64_t(C.ph_h.size()), nph_w = int64_t(C.ph_w.size()), nph = nph_h * nph_w;
  // One buffer, the (phase, group) panels back to back.
  std::vector<int64_t> off(size_t(nph * P.groups + 1), 0);
  for (int64_t ph = 0; ph < nph; ++ph) {
    const Phase1D &H = C.ph_h[size_t(ph / nph_w)], &Wd = C.ph_w[size_t(ph % nph_w)];
    const int64_t size = C.n_cb * int64_t(H.k.size() * Wd.k.size()) * C.Cin_g * kMR;
    for (int64_t g = 0; g < P.groups; ++g) off[size_t(ph * P.groups + g + 1)] = off[size_t(ph * P.groups + g)] + size;
  }
  auto fill = [&](T* buffer) {
    // Each weight row w[ci, co, :, :] is read once and its taps distributed to every phase's panel, through a
    // table of (tap, phase, offset) with one entry per tap that some phase uses.
    struct Entry {
      int64_t tap, ph, off;
    };
    std::vector<Entry> table;
    for (int64_t ph = 0; ph < nph; ++ph) {
      const Phase1D &H = C.ph_h[size_t(ph / nph_w)], &Wd = C.ph_w[size_t(ph % nph_w)];
      const int64_t Tw = int64_t(Wd.k.size());
      for (size_t th = 0; th < H.k.size(); ++th)
        for (size_t tw = 0; tw < Wd.k.size(); ++tw)
          table.push_back({H.k[th] * P.kW + Wd.k[tw], ph, (int64_t(th) * Tw + int64_t(tw)) * C.Cin_g * kMR});
    }
    const int64_t kk = P.kH * P.kW, ne = int64_t(table.size());
    parallel_for(P.groups * C.n_cb, threads, [&](int64_t i0, int64_t i1) {
      std::vector<T*> dst(static_cast<size_t>(ne));
      std::vector<int64_t> tap(static_cast<size_t>(ne));
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t cb = i % C.n_cb, g = i / C.n_cb;
        for (int64_t e = 0; e < ne; ++e) {
          const Entry& en = table[size_t(e)];
          const Phase1D &H = C.ph_h[size_t(en.ph / nph_w)], &Wd = C.ph_w[size_t(en.ph % nph_w)];
          const int64_t panel = int64_t(H.k.size() * Wd.k.size()) * C.Cin_g * kMR;
          dst[size_t(e)] = buffer + off[size_t(en.ph * P.groups + g)] + cb * panel + en.off;
          tap[size_t(e)] = en.tap;
        }
        for (int64_t ci = 0; ci < C.Cin_g; ++ci)
          for (int m = 0; m < kMR; ++m) {
            const int64_t co = cb * kMR + m, o = ci * kMR + m;
            if (co < C.Cout_g) {
              const T* src = w + ((g * C.Cin_g + ci) * C.Cout_g + co) * kk;
              for (int64_t e = 0; e < ne; ++e) dst[size_t(e)][o] = src[tap[size_t(e)]];
            } else {
              for (int64_t e = 0; e < ne; ++e) dst[size_t(e)][o] = T(0);
            }
          }
      }
    });
  };
  // The phases present depend on the output size only through min(stride, H_out) (and likewise for width).
  const T* buffer = packed_weights<T>(P, "phase mr" + std::to_string(kMR) + " " + std::to_string(nph_h) + "x" +
                                             std::to_string(nph_w),
                                      size_t(off.back()), C.wstore, fill);
  C.wpack.resize(size_t(nph * P.groups));
  for (size_t i = 0; i < C.wpack.size(); ++i) C.wpack[i] = buffer + off[i];
}

template <typename T>
void phase_task(const PhaseCtx<T>& C, const Task& t, std::vector<T>& panel) {
  const ConvTranspose2dProblem& P = *C.P;
  const Phase1D &H = C.ph_h[size_t(t.rh)], &Wd = C.ph_w[size_t(t.rw)];
  const Phase1D::Cls &hc = H.cls[size_t(t.ch)], &wc = Wd.cls[size_t(t.cw)];
  const int64_t hh = hc.j1 - hc.j0, ww = wc.j1 - wc.j0, per_img = hh * ww;
  const int64_t total = P.N * per_img;
  const int nvalid = int(std::min<int64_t>(NR<T>, total - t.q0));
  int64_t out_off[NR<T>], in_off[NR<T>];
  for (int l = 0; l < nvalid; ++l) {
    const int64_t q = t.q0 + l, n = q / per_img, rem = q % per_img;
    const int64_t jh = hc.j0 + rem / ww, jw = wc.j0 + rem % ww;
    out_off[l] = n * P.Cout * C.HWo + (H.r + P.sh * jh) * P.Wo + (Wd.r + P.sw * jw);
    in_off[l] = (n * P.Cin + t.g * C.Cin_g) * C.HW + jh * P.W + jw;
  }
  // Runs of consecutive input positions: each is one row copy per (tap, channel).
  int run_start[NR<T> + 1], nrun = 0;
  for (int l = 0; l < nvalid; ++l)
    if (l == 0 || in_off[l] != in_off[l - 1] + 1) run_start[nrun++] = l;
  run_start[nrun] = nvalid;

  const int64_t Tw = int64_t(Wd.k.size());
  const int64_t nth = hc.t1 - hc.t0, ntw = wc.t1 - wc.t0;
  const int64_t K = nth * ntw * C.Cin_g;
  // Runs are copied a whole vector at a time; what a vector writes past its run is overwritten by the next run
  // (or zeroed: lanes >= nvalid), and the panel has one vector of slack. Only reads that would pass the end of x
  // fall back to scalar copies.
  panel.resize(size_t(std::max<int64_t>(K, 1) * NR<T> + W<T>));
  T* row = panel.data();
  const T* x_end = C.x + P.N * P.Cin * C.HW;
  for (int64_t th = hc.t0; th < hc.t1; ++th)
    for (int64_t tw = wc.t0; tw < wc.t1; ++tw) {
      const T* src = C.x + H.base[size_t(th)] * P.W + Wd.base[size_t(tw)];
      for (int64_t ci = 0; ci < C.Cin_g; ++ci, row += NR<T>) {
        const T* s = src + ci * C.HW;
        for (int r = 0; r < nrun; ++r) {
          const int l0 = run_start[r], l1 = run_start[r + 1];
          const T* sp = s + in_off[l0] - l0;
          int l = l0;
          for (; l < l1 && sp + l + W<T> <= x_end; l += W<T>) store<T>(row + l, load<T>(sp + l));
          for (; l < l1; ++l) row[l] = sp[l];
        }
        for (int l = nvalid; l < NR<T>; ++l) row[l] = T(0);
      }
    }
  Seg segs[64];
  int nseg = 0;
  std::vector<Seg> many;
  Seg* sp = segs;
  if (nth > 64) {
    many.resize(size_t(nth));
    sp = many.data();
  }
  for (int64_t th = hc.t0; th < hc.t1; ++th) sp[nseg++] = {(th * Tw + wc.t0) * C.Cin_g, ntw * C.Cin_g};
  const int64_t Th = int64_t(H.k.size());
  const T* wp = C.wpack[size_t((t.rh * int64_t(C.ph_w.size()) + t.rw) * P.groups + t.g)];
  const int nv = (nvalid + W<T> - 1) / W<T>;
  for (int64_t cb = t.cb0; cb < t.cb1; ++cb) {
    const int mr = int(std::min<int64_t>(kMR, C.Cout_g - cb * kMR));
    pick_tile<PhaseTiles<T>>(mr, nv)(C, sp, nseg, wp + cb * Th * Tw * C.Cin_g * kMR, panel.data(),
                               t.g * C.Cout_g + cb * kMR, out_off, nvalid);
  }
}

// Direct mode: a tile is up to NV "row vectors", each W consecutive pixels of one output row of the phase, whose
// B operand is read straight from the padded input (no packing): a row vector starting at phase column jw0 of
// row jh reads xpad[n, c, hb + jh, Lpad + wb + jw0 .. + W).
struct RowVec {
  int64_t in, out;  // offsets in xpad (channel 0 of the group) and in y (channel 0)
  int valid;
};

template <typename T, int MR, int NV>
void direct_tile(const PhaseCtx<T>& C, const Phase1D& H, const Phase1D& Wd, const Phase1D::Cls& hc, const T* apanel,
                 const RowVec* rv, int64_t co0) {
  vec_t<T> acc[MR][NV];
  for (int m = 0; m < MR; ++m)
    for (int v = 0; v < NV; ++v) acc[m][v] = splat<T>(0);
  const int64_t Tw = int64_t(Wd.k.size());
  const T* bp[NV];
  for (int64_t th = hc.t0; th < hc.t1; ++th)
    for (int64_t tw = 0; tw < Tw; ++tw) {
      const int64_t off = H.base[size_t(th)] * C.Wp + Wd.base[size_t(tw)];
      for (int v = 0; v < NV; ++v) bp[v] = C.xpad + rv[v].in + off;
      micro_rows<T, MR, NV>(C.Cin_g, apanel + (th * Tw + tw) * C.Cin_g * kMR, kMR, bp, C.HWp, acc);
    }
  const int64_t sw = C.P->sw;
  T tmp[W<T>];
  for (int m = 0; m < MR; ++m) {
    const int64_t c = co0 + m;
    T* yc = C.y + c * C.HWo;
    for (int v = 0; v < NV; ++v) {
      store<T>(tmp, C.ep.apply(acc[m][v], c));
      T* yo = yc + rv[v].out;
      if (sw == 1) {
        for (int l = 0; l < rv[v].valid; ++l) yo[l] = tmp[l];
      } else {
        for (int l = 0; l < rv[v].valid; ++l) yo[l * sw] = tmp[l];
      }
    }
  }
}

// Flat mode (phase width == input width, narrower than a vector): a vector is W consecutive pixels of the
// phase's flattened (row, column) plane of one image, which for every tap are W consecutive input elements
// (offset hb*W_in + wb). Lanes whose tap falls outside the input are masked to zero; the input carries slack on
// both ends so that such reads stay inside the buffer.
struct FlatVec {
  int64_t in;       // offset in xpad of the vector's first pixel (channel 0 of the group), no tap
  int64_t out[64];  // y offset of each lane (channel 0)
  int valid;
};

// Per task: for each tap, the lane masks of the tile's vectors (computed once, shared by all C_out blocks).
template <typename T>
struct FlatMasks {
  std::vector<ivec_t<T>> mask;  // [tap][nv]
  std::vector<char> any;        // [tap]: some lane of some vector reads inside the input
};

template <typename T, int MR, int NV>
void flat_tile(const PhaseCtx<T>& C, const Phase1D& H, const Phase1D& Wd, const T* apanel, const FlatVec* fv,
               const FlatMasks<T>& fm, int nvt, int64_t co0) {
  const ConvTranspose2dProblem& P = *C.P;
  vec_t<T> acc[MR][NV];
  for (int m = 0; m < MR; ++m)
    for (int v = 0; v < NV; ++v) acc[m][v] = splat<T>(0);
  const int64_t Th = int64_t(H.k.size()), Tw = int64_t(Wd.k.size());
  const T* bp[NV];
  for (int64_t th = 0; th < Th; ++th)
    for (int64_t tw = 0; tw < Tw; ++tw) {
      const int64_t tap = th * Tw + tw;
      if (!fm.any[size_t(tap)]) continue;
      const int64_t off = H.base[size_t(th)] * P.W + Wd.base[size_t(tw)];
      for (int v = 0; v < NV; ++v) bp[v] = C.xpad + fv[v].in + off;
      micro_rows_masked<T, MR, NV>(C.Cin_g, apanel + tap * C.Cin_g * kMR, kMR, bp, C.HW,
                                   fm.mask.data() + tap * nvt, acc);
    }
  T tmp[W<T>];
  for (int m = 0; m < MR; ++m) {
    const int64_t c = co0 + m;
    T* yc = C.y + c * C.HWo;
    for (int v = 0; v < NV; ++v) {
      store<T>(tmp, C.ep.apply(acc[m][v], c));
      for (int l = 0; l < fv[v].valid; ++l) yc[fv[v].out[l]] = tmp[l];
    }
  }
}

template <typename T>
using FlatTileFn = void (*)(const PhaseCtx<T>&, const Phase1D&, const Phase1D&, const T*, const FlatVec*,
                           const FlatMasks<T>&, int, int64_t);

template <typename T>
struct FlatTiles {
  using Fn = FlatTileFn<T>;
  static constexpr bool wide = true;
  template <int MR, int NV>
  static constexpr Fn fn = &flat_tile<T, MR, NV>;
};

template <typename T>
void flat_task(const PhaseCtx<T>& C, const Task& t) {
  using I = ivec_t<T>;
  using E = decltype(I{}[0] + 0);
  const ConvTranspose2dProblem& P = *C.P;
  const Phase1D &H = C.ph_h[size_t(t.rh)], &Wd = C.ph_w[size_t(t.rw)];
  const int64_t plane = H.n_out * P.W, nvq = (plane + W<T> - 1) / W<T>, total = P.N * nvq;
  FlatVec fv[4];
  I jh[4], jw[4];  // phase row / column of each lane; lanes past the image get a row that is never valid
  const int nv = int(std::min<int64_t>(C.nvt, total - t.q0));
  for (int v = 0; v < nv; ++v) {
    const int64_t i = t.q0 + v, n = i / nvq, q0 = (i % nvq) * W<T>;
    fv[v].in = (n * P.Cin + t.g * C.Cin_g) * C.HW + q0;
    fv[v].valid = int(std::min<int64_t>(W<T>, plane - q0));
    int64_t r = q0 / P.W, c = q0 % P.W;
    for (int l = 0; l < W<T>; ++l) {
      if (l < fv[v].valid) {
        jh[v][l] = E(r);
        jw[v][l] = E(c);
        fv[v].out[l] = n * P.Cout * C.HWo + (H.r + P.sh * r) * P.Wo + Wd.r + P.sw * c;
      } else {
        jh[v][l] = E(-2 * P.H - 2);
        jw[v][l] = 0;
      }
      if (++c == P.W) {
        c = 0;
        ++r;
      }
    }
  }
  const int64_t Th = int64_t(H.k.size()), Tw = int64_t(Wd.k.size());
  thread_local FlatMasks<T> fm;
  fm.mask.resize(size_t(Th * Tw * nv));
  fm.any.resize(size_t(Th * Tw));
  for (int64_t th = 0; th < Th; ++th)
    for (int64_t tw = 0; tw < Tw; ++tw) {
      const E hb = E(H.base[size_t(th)]), wb = E(Wd.base[size_t(tw)]);
      bool any = false;
      for (int v = 0; v < nv; ++v) {
        const I ih = jh[v] + hb, iw = jw[v] + wb;
        const I ok = (ih >= E(0)) & (ih < E(P.H)) & (iw >= E(0)) & (iw < E(P.W));
        fm.mask[size_t((th * Tw + tw) * nv + v)] = ok;
        for (int l = 0; l < W<T>; ++l) any |= ok[l] != 0;
      }
      fm.any[size_t(th * Tw + tw)] = any;
    }
  const T* wp = C.wpack[size_t((t.rh * int64_t(C.ph_w.size()) + t.rw) * P.groups + t.g)];
  for (int64_t cb = t.cb0; cb < t.cb1; ++cb) {
    const int mr = int(std::min<int64_t>(kMR, C.Cout_g - cb * kMR));
    pick_tile<FlatTiles<T>>(mr, nv)(C, H, Wd, wp + cb * Th * Tw * C.Cin_g * kMR, fv, fm, nv, t.g * C.Cout_g + cb * kMR);
  }
}

template <typename T>
using DirectTileFn = void (*)(const PhaseCtx<T>&, const Phase1D&, const Phase1D&, const Phase1D::Cls&, const T*,
                              const RowVec*, int64_t);

#if GENRT_VEC_BYTES >= 64
constexpr int kNVwide = 4;  // few output channels: more row vectors per tile keep enough accumulators busy
#else
constexpr int kNVwide = kNV;
#endif

template <typename T>
struct DirectTiles {
  using Fn = DirectTileFn<T>;
  static constexpr bool wide = true;
  template <int MR, int NV>
  static constexpr Fn fn = &direct_tile<T, MR, NV>;
};

template <typename T>
void direct_task(const PhaseCtx<T>& C, const Task& t) {
  const ConvTranspose2dProblem& P = *C.P;
  const Phase1D &H = C.ph_h[size_t(t.rh)], &Wd = C.ph_w[size_t(t.rw)];
  const Phase1D::Cls& hc = H.cls[size_t(t.ch)];
  const int64_t hh = hc.j1 - hc.j0, nvr = (Wd.n_out + W<T> - 1) / W<T>, total = P.N * hh * nvr;
  RowVec rv[4];
  const int nv = int(std::min<int64_t>(C.nvt, total - t.q0));
  for (int v = 0; v < nv; ++v) {
    const int64_t i = t.q0 + v, n = i / (hh * nvr), jh = hc.j0 + (i / nvr) % hh, jw0 = (i % nvr) * W<T>;
    rv[v].in = (n * P.Cin + t.g * C.Cin_g) * P.H * C.Wp + jh * C.Wp + C.Lpad + jw0;
    rv[v].out = n * P.Cout * C.HWo + (H.r + P.sh * jh) * P.Wo + Wd.r + P.sw * jw0;
    rv[v].valid = int(std::min<int64_t>(W<T>, Wd.n_out - jw0));
  }
  const int64_t Th = int64_t(H.k.size()), Tw = int64_t(Wd.k.size());
  const T* wp = C.wpack[size_t((t.rh * int64_t(C.ph_w.size()) + t.rw) * P.groups + t.g)];
  for (int64_t cb = t.cb0; cb < t.cb1; ++cb) {
    const int mr = int(std::min<int64_t>(kMR, C.Cout_g - cb * kMR));
    pick_tile<DirectTiles<T>>(mr, nv)(C, H, Wd, hc, wp + cb * Th * Tw * C.Cin_g * kMR, rv, t.g * C.Cout_g + cb * kMR);
  }
}

// Direct mode pays for lanes past the end of short phase rows and for zero columns at the left/right borders;
// packed mode pays for copying a B panel per pixel tile, shared by C_out/groups channels.
template <typename T>
bool prefer_direct(const ConvTranspose2dProblem& P, const std::vector<Phase1D>& ph_w) {
  double lanes = 0, used = 0, taps_all = 0, taps_valid = 0;
  for (const Phase1D& p : ph_w) {
    lanes += double((p.n_out + W<T> - 1) / W<T> * W<T>);
    used += double(p.n_out);
    for (const Phase1D::Cls& c : p.cls) {
      taps_all += double(p.k.size()) * double(c.j1 - c.j0);
      taps_valid += double(c.t1 - c.t0) * double(c.j1 - c.j0);
    }
  }
  if (used == 0 || taps_valid == 0) return false;
  const double direct = lanes / used * taps_all / taps_valid;
  const double packed = 1.0 + 20.0 / double(P.Cout / P.groups);
  return direct <= packed;
}

template <typename T>
void phase_gemm(const ConvTranspose2dProblem& P, const T* x, const T* w, T* y, const Epilogue<T>& ep,
                int threads) {
  PhaseCtx<T> C;
  C.P = &P;
  C.x = x;
  C.y = y;
  C.ep = ep;
  C.Cin_g = P.Cin / P.groups;
  C.Cout_g = P.Cout / P.groups;
  C.HW = P.H * P.W;
  C.HWo = P.Ho * P.Wo;
  C.n_cb = (C.Cout_g + kMR - 1) / kMR;
  // Residues r >= H_out have no output rows: at most min(stride, H_out) phases (a huge stride stays cheap).
  for (int64_t r = 0; r < std::min(P.sh, P.Ho); ++r)
    C.ph_h.push_back(make_phase(r, P.sh, P.ph, P.dh, P.kH, P.H, P.Ho));
  for (int64_t r = 0; r < std::min(P.sw, P.Wo); ++r)
    C.ph_w.push_back(make_phase(r, P.sw, P.pw, P.dw, P.kW, P.W, P.Wo));
  pack_phase_weights(C, w, threads);

  const bool flat = flat_applies(P) && (P.algo == 4 || (P.algo == 0 && P.W < W<T>));
  const bool direct = !flat && (P.algo == 3 || (P.algo != 2 && prefer_direct<T>(P, C.ph_w)));
  std::vector<Task> tasks;
  if (flat) {
    int64_t reach = 0;  // how far a tap reads outside one image's planes
    for (const Phase1D& p : C.ph_h)
      for (int64_t b : p.base) reach = std::max(reach, std::abs(b) + 1);
    for (const Phase1D& p : C.ph_w)
      for (int64_t b : p.base) reach = std::max(reach, std::abs(b) + 1);
    const int64_t slack = reach * (P.W + 1) + 2 * W<T>, count = P.N * P.Cin * C.HW;
    thread_local std::vector<T> xflat_store;
    const size_t size = size_t(count + 2 * slack);
    if (xflat_store.size() < size) {
      xflat_store.clear();
      xflat_store.shrink_to_fit();
      xflat_store.resize(size);
    }
    std::fill(xflat_store.begin(), xflat_store.begin() + slack, T(0));
    std::memcpy(xflat_store.data() + slack, x, size_t(count) * sizeof(T));
    std::fill(xflat_store.begin() + slack + count, xflat_store.begin() + size_t(count + 2 * slack), T(0));
    C.xpad = xflat_store.data() + slack;
    C.nvt = C.Cout_g <= 4 ? kNVwide : kNV;
    for (int32_t rh = 0; rh < int32_t(C.ph_h.size()); ++rh)
      for (int32_t rw = 0; rw < int32_t(C.ph_w.size()); ++rw) {
        const int64_t plane = C.ph_h[size_t(rh)].n_out * P.W, total = P.N * ((plane + W<T> - 1) / W<T>);
        for (int64_t g = 0; g < P.groups; ++g)
          for (int64_t q0 = 0; q0 < total; q0 += C.nvt) tasks.push_back({rh, rw, 0, 0, g, q0, 0, C.n_cb});
      }
  } else if (direct) {
    int64_t lo = 0, hi = P.W - 1;
    for (const Phase1D& p : C.ph_w)
      for (size_t t = 0; t < p.k.size(); ++t) {
        lo = std::min(lo, p.base[t]);
        hi = std::max(hi, p.base[t] + p.n_out - 1);
      }
    C.Lpad = -lo;
    C.Wp = C.Lpad + hi + 1;
    C.HWp = P.H * C.Wp;
    C.nvt = C.Cout_g <= 4 ? kNVwide : kNV;
    const int64_t rows = P.N * P.Cin * P.H;
    // Scratch kept per calling thread: a fresh allocation would page-fault on every call.
    thread_local std::vector<T> xpad_store;
    const size_t xpad_size = size_t(rows * C.Wp + C.Wp + 4 * W<T>);
    if (xpad_store.size() < xpad_size) {
      xpad_store.clear();
      xpad_store.shrink_to_fit();
      xpad_store.resize(xpad_size);
    }
    C.xpad = xpad_store.data();
    T* xp = C.xpad;
    // (small copies stay on the calling thread: waking the pool costs more)
    parallel_for(rows, rows * C.Wp * int64_t(sizeof(T)) > (1 << 20) ? threads : 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        T* d = xp + r * C.Wp;
        std::fill(d, d + C.Lpad, T(0));
        std::memcpy(d + C.Lpad, x + r * P.W, size_t(P.W) * sizeof(T));
        std::fill(d + C.Lpad + P.W, d + C.Wp, T(0));
      }
    });
    std::fill(xp + rows * C.Wp, xp + xpad_size, T(0));
    for (int32_t rh = 0; rh < int32_t(C.ph_h.size()); ++rh)
      for (int32_t rw = 0; rw < int32_t(C.ph_w.size()); ++rw) {
        const int64_t nvr = (C.ph_w[size_t(rw)].n_out + W<T> - 1) / W<T>;
        for (int64_t g = 0; g < P.groups; ++g)
          for (int32_t ch = 0; ch < int32_t(C.ph_h[size_t(rh)].cls.size()); ++ch) {
            const auto& hc = C.ph_h[size_t(rh)].cls[size_t(ch)];
            const int64_t total = P.N * (hc.j1 - hc.j0) * nvr;
            for (int64_t q0 = 0; q0 < total; q0 += C.nvt) tasks.push_back({rh, rw, ch, 0, g, q0, 0, C.n_cb});
          }
      }
  } else {
  for (int32_t rh = 0; rh < int32_t(C.ph_h.size()); ++rh)
    for (int32_t rw = 0; rw < int32_t(C.ph_w.size()); ++rw)
      for (int64_t g = 0; g < P.groups; ++g)
        for (int32_t ch = 0; ch < int32_t(C.ph_h[size_t(rh)].cls.size()); ++ch)
          for (int32_t cw = 0; cw < int32_t(C.ph_w[size_t(rw)].cls.size()); ++cw) {
            const auto &hc = C.ph_h[size_t(rh)].cls[size_t(ch)], &wc = C.ph_w[size_t(rw)].cls[size_t(cw)];
            const int64_t total = P.N * (hc.j1 - hc.j0) * (wc.j1 - wc.j0);
            for (int64_t q0 = 0; q0 < total; q0 += NR<T>) tasks.push_back({rh, rw, ch, cw, g, q0, 0, C.n_cb});
          }
  }
  // Phases of the same input rows run back to back (and, with the pool's contiguous chunks, on the same thread),
  // so each input row is read from memory once, not once per phase.
  {
    std::vector<std::pair<int64_t, size_t>> key(tasks.size());
    for (size_t i = 0; i < tasks.size(); ++i) {
      const Task& t = tasks[i];
      const Phase1D &H = C.ph_h[size_t(t.rh)], &Wd = C.ph_w[size_t(t.rw)];
      const Phase1D::Cls hc = H.cls.empty() ? Phase1D::Cls{0, 1, 0, 0} : H.cls[size_t(t.ch)];
      const int64_t hh = hc.j1 - hc.j0;
      int64_t n, jh, jw;
      if (flat) {
        const int64_t plane = H.n_out * P.W, nvq = (plane + W<T> - 1) / W<T>;
        n = t.q0 / nvq;
        jh = ((t.q0 % nvq) * W<T>) / P.W;
        jw = 0;
      } else if (direct) {
        const int64_t nvr = (Wd.n_out + W<T> - 1) / W<T>;
        n = t.q0 / (hh * nvr);
        jh = hc.j0 + (t.q0 / nvr) % hh;
        jw = (t.q0 % nvr) * W<T>;
      } else {
        const Phase1D::Cls& wc = Wd.cls[size_t(t.cw)];
        const int64_t ww = wc.j1 - wc.j0;
        n = t.q0 / (hh * ww);
        jh = hc.j0 + (t.q0 / ww) % hh;
        jw = wc.j0 + t.q0 % ww;
      }
      key[i] = {((t.g * P.N + n) * (P.H + 1) + jh) * (P.W + 1) + jw, i};
    }
    std::stable_sort(key.begin(), key.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<Task> sorted(tasks.size());
    for (size_t i = 0; i < tasks.size(); ++i) sorted[i] = tasks[key[i].second];
    tasks.swap(sorted);
  }
  // Too few pixel tiles for the threads: split the output channels as well.
  const int64_t want = int64_t(threads) * 8;
  if (threads > 1 && int64_t(tasks.size()) < want && C.n_cb > 1) {
    const int64_t split = std::min<int64_t>(C.n_cb, (want + int64_t(tasks.size()) - 1) / int64_t(tasks.size()));
    std::vector<Task> more;
    for (const Task& t : tasks)
      for (int64_t s = 0; s < split; ++s) {
        Task u = t;
        u.cb0 = C.n_cb * s / split;
        u.cb1 = C.n_cb * (s + 1) / split;
        if (u.cb0 < u.cb1) more.push_back(u);
      }
    tasks.swap(more);
  }
  parallel_for(int64_t(tasks.size()), threads, [&](int64_t i0, int64_t i1) {
    thread_local std::vector<T> panel;
    for (int64_t i = i0; i < i1; ++i) {
      if (flat)
        flat_task(C, tasks[size_t(i)]);
      else if (direct)
        direct_task(C, tasks[size_t(i)]);
      else
        phase_task(C, tasks[size_t(i)], panel);
    }
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Column GEMM

// The column paths' work split: each group's output channels in per_group chunks (a few per thread), chunk i
// owning channels [co0, co1) of group g, so its scatter-adds and epilogue touch only its own channels.
struct ChannelChunks {
  int64_t groups, Cout_g, per_group;
  ChannelChunks(const ConvTranspose2dProblem& P, int threads)
      : groups(P.groups),
        Cout_g(P.Cout / P.groups),
        per_group(std::max<int64_t>(1, std::min<int64_t>(Cout_g, (int64_t(threads) * 4 + groups - 1) / groups))) {}
  int64_t count() const { return groups * per_group; }
  int64_t group(int64_t i) const { return i / per_group; }
  int64_t co0(int64_t i) const { return Cout_g * (i % per_group) / per_group; }
  int64_t co1(int64_t i) const { return Cout_g * (i % per_group + 1) / per_group; }
};

#if GENRT_VEC_BYTES >= 64
constexpr int kNVcw = 8;  // column tiles of the column GEMM when it has at most 2 pixel rows
#else
constexpr int kNVcw = 4;
#endif

template <typename T>
constexpr int NRcol = (kNVcw > kNV ? kNVcw : kNV) * W<T>;  // widest column tile

template <typename T, int MR, int NV>
void col_tile(int64_t K, const T* apanel, const T* b, int64_t ldb, T* out, int64_t ldo) {
  vec_t<T> acc[MR][NV];
  for (int m = 0; m < MR; ++m)
    for (int v = 0; v < NV; ++v) acc[m][v] = splat<T>(0);
  if (ldb > NV * W<T>)
    micro<T, MR, NV, 8>(K, apanel, kMR, b, ldb, acc);
  else
    micro<T, MR, NV>(K, apanel, kMR, b, ldb, acc);
  for (int m = 0; m < MR; ++m)
    for (int v = 0; v < NV; ++v) store<T>(out + m * ldo + v * W<T>, acc[m][v]);
}

template <typename T>
using ColTileFn = void (*)(int64_t, const T*, const T*, int64_t, T*, int64_t);

template <typename T>
struct ColTiles {
  using Fn = ColTileFn<T>;
  static constexpr bool wide = false;
  template <int MR, int NV>
  static constexpr Fn fn = &col_tile<T, MR, NV>;
};

template <typename T>
ColTileFn<T> pick_col_tile(int mr, int nv, bool wide) {
  if (wide) return mr == 1 ? &col_tile<T, 1, kNVcw> : &col_tile<T, 2, kNVcw>;
  return pick_tile<ColTiles<T>>(mr, nv);
}

// Column GEMM with more than two pixels: the roles swap. MR consecutive columns of one weight row (one cache line)
// are broadcast in place and the pixels are the vectors, from x^T packed [C_in/groups][NV*W] (L1-resident), so
// the weights stream through exactly once, in order, prefetched ahead.
#if GENRT_VEC_BYTES >= 64
constexpr int kCTNV = 4;
template <int NV>
constexpr int ct_mr = NV == 1 ? 16 : NV == 2 ? 12 : NV == 3 ? 8 : 6;
#else
constexpr int kCTNV = 2;
template <int NV>
constexpr int ct_mr = NV == 1 ? 12 : 6;
#endif
constexpr int kCTMRmax = ct_mr<1>;

// acc (in `out`, [MR][NV*W]) += sum over K rows.
template <typename T, int NV>
void ct_tile(int64_t K, const T* a, int64_t lda, const T* b, T* out) {
  constexpr int MR = ct_mr<NV>;
  vec_t<T> acc[MR][NV];
  for (int m = 0; m < MR; ++m)
    for (int v = 0; v < NV; ++v) acc[m][v] = load<T>(out + (m * NV + v) * W<T>);
  for (int64_t k = 0; k < K; ++k) {
    __builtin_prefetch(a + 2 * MR);
    vec_t<T> bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = load<T>(b + v * W<T>);
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) {
      const vec_t<T> av = splat<T>(a[m]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[m][v] += av * bv[v];
    }
    a += lda;
    b += NV * W<T>;
  }
  for (int m = 0; m < MR; ++m)
    for (int v = 0; v < NV; ++v) store<T>(out + (m * NV + v) * W<T>, acc[m][v]);
}

template <typename T>
void col_gemm_ct(const ConvTranspose2dProblem& P, const T* x, const T* w, T* y, const Epilogue<T>& ep,
                 int threads) {
  const int64_t Cin_g = P.Cin / P.groups, Cout_g = P.Cout / P.groups, HW = P.H * P.W, HWo = P.Ho * P.Wo;
  const int64_t kk = P.kH * P.kW, J = Cout_g * kk, Np = P.N * HW;
  const int nvb = int(std::min<int64_t>(kCTNV, (Np + W<T> - 1) / W<T>));
  const int64_t PB = int64_t(nvb) * W<T>, n_pb = (Np + PB - 1) / PB;
  int mrc = 0;
  void (*tile_fn)(int64_t, const T*, int64_t, const T*, T*) = nullptr;
  switch (nvb) {
    case 1: mrc = ct_mr<1>; tile_fn = &ct_tile<T, 1>; break;
#if GENRT_VEC_BYTES >= 64
    case 3: mrc = ct_mr<3>; tile_fn = &ct_tile<T, 3>; break;
    case 4: mrc = ct_mr<4>; tile_fn = &ct_tile<T, 4>; break;
#endif
    default: mrc = ct_mr<2>; tile_fn = &ct_tile<T, 2>; break;
  }
  // x^T per group and pixel block: [group][pixel block][C_in/groups][PB], zero padded.
  std::vector<T> xt(size_t(P.groups * n_pb * Cin_g * PB));
  parallel_for(P.groups * n_pb, threads, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t g = i / n_pb, pb = i % n_pb;
      T* dst = xt.data() + i * Cin_g * PB;
      for (int64_t ci = 0; ci < Cin_g; ++ci)
        for (int64_t l = 0; l < PB; ++l) {
          const int64_t p = pb * PB + l;
          *dst++ = p < Np ? x[((p / HW) * P.Cin + g * Cin_g + ci) * HW + p % HW] : T(0);
        }
    }
  });
  // Input row segments of each pixel block: the scatter checks a row once and clips its column range.
  struct RowSeg {
    int64_t l0, len, ybase, oh0, ow0;  // tile offset, pixels, y offset of (n, oh0, ow0), first output row/col
  };
  std::vector<std::vector<RowSeg>> segs(static_cast<size_t>(n_pb));
  for (int64_t pb = 0; pb < n_pb; ++pb)
    for (int64_t p = pb * PB; p < std::min<int64_t>(Np, (pb + 1) * PB);) {
      const int64_t n = p / HW, ih = (p % HW) / P.W, iw = p % P.W;
      const int64_t len = std::min<int64_t>({P.W - iw, (pb + 1) * PB - p, Np - p});
      const int64_t oh0 = ih * P.sh - P.ph, ow0 = iw * P.sw - P.pw;
      segs[size_t(pb)].push_back({p - pb * PB, len, n * P.Cout * HWo + oh0 * P.Wo + ow0, oh0, ow0});
      p += len;
    }
  const ChannelChunks chunks(P, threads);
  // With a weight cache, each chunk's tiles are kept packed as [tile][C_in/groups][mrc] (zero-padded past the
  // chunk's columns), so a tile streams one contiguous panel instead of mrc columns of rows J apart.
  const T* wpk = nullptr;
  std::vector<int64_t> chunk_off;
  if (P.cache) {
    chunk_off.assign(size_t(chunks.count() + 1), 0);
    for (int64_t i = 0; i < chunks.count(); ++i)
      chunk_off[size_t(i + 1)] =
          chunk_off[size_t(i)] + ((chunks.co1(i) - chunks.co0(i)) * kk + mrc - 1) / mrc * Cin_g * mrc;
    std::vector<T> unused;
    wpk = packed_weights<T>(
        P, "ct mr" + std::to_string(mrc) + " chunks" + std::to_string(chunks.per_group), size_t(chunk_off.back()),
        unused, [&](T* buffer) {
          parallel_for(chunks.count(), threads, [&](int64_t i0, int64_t i1) {
            for (int64_t i = i0; i < i1; ++i) {
              const int64_t jb = chunks.co0(i) * kk, je = chunks.co1(i) * kk;
              const T* wg = w + chunks.group(i) * Cin_g * J;
              T* dst = buffer + chunk_off[size_t(i)];
              for (int64_t jt = jb; jt < je; jt += mrc)
                for (int64_t ci = 0; ci < Cin_g; ++ci)
                  for (int c = 0; c < mrc; ++c) *dst++ = jt + c < je ? wg[ci * J + jt + c] : T(0);
            }
          });
        });
  }
  parallel_for(chunks.count(), threads, [&](int64_t i0, int64_t i1) {
    thread_local std::vector<T> tail, acc;
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t g = chunks.group(i), co0 = chunks.co0(i), co1 = chunks.co1(i);
      if (co0 >= co1) continue;
      for (int64_t n = 0; n < P.N; ++n)
        std::memset(y + (n * P.Cout + g * Cout_g + co0) * HWo, 0, size_t((co1 - co0) * HWo) * sizeof(T));
      const T* wg = w + g * Cin_g * J;
      const int64_t jb = co0 * kk, je = co1 * kk, n_jt = (je - jb + mrc - 1) / mrc;
      // The last tile may pass the end of the weight rows: it reads a zero-padded copy.
      const bool has_tail = !wpk && jb + n_jt * mrc > J;
      if (has_tail) {
        const int64_t jt = jb + (n_jt - 1) * mrc;
        tail.assign(size_t(Cin_g * mrc), T(0));
        for (int64_t ci = 0; ci < Cin_g; ++ci)
          for (int c = 0; c < J - jt; ++c) tail[size_t(ci * mrc + c)] = wg[ci * J + jt + c];
      }
      // K blocks of kKB rows; within a block the tiles sweep the chunk's columns (each tile prefetching the part
      // of its rows two tiles on), so the weights are read in place, each once per pixel block.
      constexpr int64_t kKB = 512;
      acc.assign(size_t(n_pb * n_jt * mrc * PB), T(0));
      for (int64_t k0 = 0; k0 < Cin_g; k0 += kKB) {
        const int64_t kn = std::min<int64_t>(kKB, Cin_g - k0);
        for (int64_t pb = 0; pb < n_pb; ++pb) {
          const T* xb = xt.data() + ((g * n_pb + pb) * Cin_g + k0) * PB;
          for (int64_t t = 0; t < n_jt; ++t) {
            T* at = acc.data() + (pb * n_jt + t) * mrc * PB;
            if (wpk)
              tile_fn(kn, wpk + chunk_off[size_t(i)] + (t * Cin_g + k0) * mrc, mrc, xb, at);
            else if (has_tail && t == n_jt - 1)
              tile_fn(kn, tail.data() + k0 * mrc, mrc, xb, at);
            else
              tile_fn(kn, wg + k0 * J + jb + t * mrc, J, xb, at);
          }
        }
      }
      for (int64_t pb = 0; pb < n_pb; ++pb) {
        for (int64_t t = 0; t < n_jt; ++t) {
          const int64_t jt = jb + t * mrc;
          const int ncols = int(std::min<int64_t>(mrc, je - jt));
          const T* tile = acc.data() + (pb * n_jt + t) * mrc * PB;
          int64_t col_off[kCTMRmax], col_dh[kCTMRmax], col_dw[kCTMRmax];
          for (int c = 0; c < ncols; ++c) {
            const int64_t j = jt + c, co = j / kk, tap = j % kk;
            col_dh[c] = (tap / P.kW) * P.dh;
            col_dw[c] = (tap % P.kW) * P.dw;
            col_off[c] = (g * Cout_g + co) * HWo + col_dh[c] * P.Wo + col_dw[c];
          }
          if (P.W < 4) {  // short input rows: columns inner
            for (const RowSeg& r : segs[size_t(pb)])
              for (int64_t i = 0; i < r.len; ++i) {
                const int64_t oh0 = r.oh0, ow0 = r.ow0 + i * P.sw;
                T* yp = y + r.ybase + i * P.sw;
                const T* tp = tile + r.l0 + i;
                const bool inside = oh0 >= 0 && oh0 + (P.kH - 1) * P.dh < P.Ho && ow0 >= 0 &&
                                    ow0 + (P.kW - 1) * P.dw < P.Wo;
                if (inside) {
                  for (int c = 0; c < ncols; ++c) yp[col_off[c]] += tp[c * PB];
                } else {
                  for (int c = 0; c < ncols; ++c) {
                    const int64_t oh = oh0 + col_dh[c], ow = ow0 + col_dw[c];
                    if (oh >= 0 && oh < P.Ho && ow >= 0 && ow < P.Wo) yp[col_off[c]] += tp[c * PB];
                  }
                }
              }
            continue;
          }
          for (int c = 0; c < ncols; ++c) {
            T* yc = y + col_off[c];
            const T* tr = tile + c * PB;
            for (const RowSeg& r : segs[size_t(pb)]) {
              const int64_t oh = r.oh0 + col_dh[c], ow = r.ow0 + col_dw[c];
              if (oh < 0 || oh >= P.Ho) continue;
              // columns ow + i*sw inside [0, Wo); divisions only for segments that cross a border
              const int64_t i0 = ow >= 0 ? 0 : (-ow + P.sw - 1) / P.sw;
              const int64_t i1 = ow + (r.len - 1) * P.sw < P.Wo ? r.len
                                 : ow >= P.Wo                  ? 0
                                                               : (P.Wo - 1 - ow) / P.sw + 1;
              T* yr = yc + r.ybase;
              const T* tt = tr + r.l0;
              for (int64_t i = i0; i < i1; ++i) yr[i * P.sw] += tt[i];
            }
          }
        }
      }
      for (int64_t n = 0; n < P.N; ++n)
        for (int64_t co = co0; co < co1; ++co)
          ep.run(y + (n * P.Cout + g * Cout_g + co) * HWo, HWo, g * Cout_g + co);
    }
  });
}

// One pixel (a 1x1 input at batch 1): a GEMV. Each thread owns a range of output channels; for every
// input channel it streams the contiguous slice of that weight row into accumulators that stay in L1, so the
// weights are read strictly in order. Then the accumulated columns are scattered to the output.
template <typename T>
void col_gemv(const ConvTranspose2dProblem& P, const T* x, const T* w, T* y, const Epilogue<T>& ep, int threads) {
  const int64_t Cin_g = P.Cin / P.groups, Cout_g = P.Cout / P.groups, HW = P.H * P.W, HWo = P.Ho * P.Wo;
  const int64_t kk = P.kH * P.kW, J = Cout_g * kk, Np = P.N * HW;
  const ChannelChunks chunks(P, threads);
  // With a weight cache, each chunk's slices of the C_in/groups weight rows are kept back to back, so a chunk
  // streams one contiguous block.
  const T* wpk = nullptr;
  if (P.cache) {
    std::vector<T> unused;
    auto fill = [&](T* buffer) {
      parallel_for(chunks.count(), threads, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t g = chunks.group(i), jb = chunks.co0(i) * kk, nj = chunks.co1(i) * kk - jb;
          T* dst = buffer + g * Cin_g * J + Cin_g * jb;
          for (int64_t ci = 0; ci < Cin_g; ++ci, dst += nj)
            std::memcpy(dst, w + (g * Cin_g + ci) * J + jb, size_t(nj) * sizeof(T));
        }
      });
    };
    wpk = packed_weights<T>(P, "gemv chunks" + std::to_string(chunks.per_group), size_t(P.groups * Cin_g * J),
                            unused, fill);
  }
  parallel_for(chunks.count(), threads, [&](int64_t i0, int64_t i1) {
    thread_local std::vector<T> acc;
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t g = chunks.group(i), co0 = chunks.co0(i), co1 = chunks.co1(i);
      if (co0 >= co1) continue;
      const int64_t jb = co0 * kk, nj = (co1 - co0) * kk;
      acc.assign(size_t(Np * nj), T(0));
      const T* wg = wpk ? wpk + g * Cin_g * J + Cin_g * jb : w + g * Cin_g * J + jb;
      const int64_t ldw = wpk ? nj : J;
      for (int64_t ci = 0; ci < Cin_g; ++ci) {
        const T* wr = wg + ci * ldw;
        for (int64_t p = 0; p < Np; ++p) {
          const T xv = x[((p / HW) * P.Cin + g * Cin_g + ci) * HW + p % HW];
          const vec_t<T> xb = splat<T>(xv);
          T* a = acc.data() + p * nj;
          int64_t j = 0;
          for (; j + W<T> <= nj; j += W<T>) store<T>(a + j, load<T>(a + j) + xb * load<T>(wr + j));
          for (; j < nj; ++j) a[j] += xv * wr[j];
        }
      }
      for (int64_t n = 0; n < P.N; ++n)
        std::memset(y + (n * P.Cout + g * Cout_g + co0) * HWo, 0, size_t((co1 - co0) * HWo) * sizeof(T));
      for (int64_t p = 0; p < Np; ++p) {
        const int64_t n = p / HW, ih = (p % HW) / P.W, iw = p % P.W;
        const int64_t oh0 = ih * P.sh - P.ph, ow0 = iw * P.sw - P.pw;
        T* yb = y + n * P.Cout * HWo + oh0 * P.Wo + ow0;
        const T* a = acc.data() + p * nj;
        for (int64_t c = 0; c < nj; ++c) {
          const int64_t j = jb + c, co = j / kk, tap = j % kk;
          const int64_t dh = (tap / P.kW) * P.dh, dw = (tap % P.kW) * P.dw;
          const int64_t oh = oh0 + dh, ow = ow0 + dw;
          if (oh >= 0 && oh < P.Ho && ow >= 0 && ow < P.Wo) yb[(g * Cout_g + co) * HWo + dh * P.Wo + dw] += a[c];
        }
      }
      for (int64_t n = 0; n < P.N; ++n)
        for (int64_t co = co0; co < co1; ++co)
          ep.run(y + (n * P.Cout + g * Cout_g + co) * HWo, HWo, g * Cout_g + co);
    }
  });
}

// Column GEMM with the weights as the vectors and the pixels broadcast.
template <typename T>
void col_gemm(const ConvTranspose2dProblem& P, const T* x, const T* w, T* y, const Epilogue<T>& ep, int threads) {
  const int64_t Cin_g = P.Cin / P.groups, Cout_g = P.Cout / P.groups, HW = P.H * P.W, HWo = P.Ho * P.Wo;
  const int64_t kk = P.kH * P.kW, J = Cout_g * kk, Np = P.N * HW, n_pb = (Np + kMR - 1) / kMR;
  // x^T per group, packed as [group][pixel block][C_in/groups][MR].
  std::vector<T> xp(size_t(P.groups * n_pb * Cin_g * kMR));
  parallel_for(P.groups * n_pb, threads, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t g = i / n_pb, pb = i % n_pb;
      T* dst = xp.data() + i * Cin_g * kMR;
      for (int64_t ci = 0; ci < Cin_g; ++ci)
        for (int m = 0; m < kMR; ++m) {
          const int64_t p = pb * kMR + m;
          *dst++ = p < Np ? x[((p / HW) * P.Cin + g * Cin_g + ci) * HW + p % HW] : T(0);
        }
    }
  });
  const ChannelChunks chunks(P, threads);
  // Used for one or two pixels (col_gemm_ct otherwise): wide column tiles (kNVcw vectors) so each weight row is
  // read in long runs, prefetched ahead. (MR x NR tiles for more pixels: correct, but col_gemm_ct is faster.)
  const bool wide = Np <= 2;
  const int64_t NRc = wide ? int64_t(kNVcw) * W<T> : NR<T>;
  parallel_for(chunks.count(), threads, [&](int64_t i0, int64_t i1) {
    thread_local std::vector<T> tail;
    T tile[kMR * NRcol<T>];
    int64_t col_off[NRcol<T>], col_dh[NRcol<T>], col_dw[NRcol<T>];
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t g = chunks.group(i), co0 = chunks.co0(i), co1 = chunks.co1(i);
      if (co0 >= co1) continue;
      for (int64_t n = 0; n < P.N; ++n)
        std::memset(y + (n * P.Cout + g * Cout_g + co0) * HWo, 0, size_t((co1 - co0) * HWo) * sizeof(T));
      const T* wg = w + g * Cin_g * J;
      for (int64_t jt = co0 * kk; jt < co1 * kk; jt += NRc) {
        const int ncols = int(std::min<int64_t>(NRc, co1 * kk - jt));
        const T* b = wg + jt;
        int64_t ldb = J;
        if (jt + NRc > J) {  // past the end of the weight rows: a zero-padded copy
          tail.assign(size_t(Cin_g * NRc), T(0));
          for (int64_t ci = 0; ci < Cin_g; ++ci)
            for (int c = 0; c < J - jt; ++c) tail[size_t(ci * NRc + c)] = wg[ci * J + jt + c];
          b = tail.data();
          ldb = NRc;
        }
        for (int c = 0; c < ncols; ++c) {
          const int64_t j = jt + c, co = j / kk, tap = j % kk;
          col_dh[c] = (tap / P.kW) * P.dh;
          col_dw[c] = (tap % P.kW) * P.dw;
          col_off[c] = (g * Cout_g + co) * HWo + col_dh[c] * P.Wo + col_dw[c];
        }
        const int nv = (ncols + W<T> - 1) / W<T>;
        for (int64_t pb = 0; pb < n_pb; ++pb) {
          const int mr = int(std::min<int64_t>(kMR, Np - pb * kMR));
          pick_col_tile<T>(mr, nv, wide)(Cin_g, xp.data() + (g * n_pb + pb) * Cin_g * kMR, b, ldb, tile, NRc);
          for (int m = 0; m < mr; ++m) {
            const int64_t p = pb * kMR + m, n = p / HW, ih = (p % HW) / P.W, iw = p % P.W;
            const int64_t oh0 = ih * P.sh - P.ph, ow0 = iw * P.sw - P.pw;
            T* yb = y + n * P.Cout * HWo + oh0 * P.Wo + ow0;
            const T* tr = tile + m * NRc;
            for (int c = 0; c < ncols; ++c) {
              const int64_t oh = oh0 + col_dh[c], ow = ow0 + col_dw[c];
              if (oh >= 0 && oh < P.Ho && ow >= 0 && ow < P.Wo) yb[col_off[c]] += tr[c];
            }
          }
        }
      }
      for (int64_t n = 0; n < P.N; ++n)
        for (int64_t co = co0; co < co1; ++co)
          ep.run(y + (n * P.Cout + g * Cout_g + co) * HWo, HWo, g * Cout_g + co);
    }
  });
}

// Few input pixels per weight: the column GEMM uses the weights in place instead of packing them. With a weight
// cache the packing is paid once, and the phase GEMM's flat mode (narrow inputs whose phase rows are as wide as
// the input rows: the 4x4 and 8x8 layers of a generator) measured faster than the column GEMM from two pixels up.
template <typename T>
bool use_col_gemm(const ConvTranspose2dProblem& P) {
  const int64_t pixels = P.N * P.H * P.W;
  if (pixels > P.Cin / P.groups) return false;
  return !P.cache || pixels == 1 || P.W >= W<T> || !flat_applies(P);
}

template <typename T>
void forward_impl(const ConvTranspose2dProblem& P, const T* x, const T* w, const T* bias, const T* scale,
                  const T* shift, T* y, int threads) {
  threads = std::max(threads, 1);
  const double flops = double(P.N) * double(P.Cin) * double(P.H * P.W) * double(P.Cout / P.groups) *
                       double(P.kH * P.kW);
  if (flops < 2e5) threads = 1;
  const Epilogue<T> ep{bias, scale, shift, P.activation, T(P.slope)};
  if (P.algo == 1 || (P.algo == 0 && use_col_gemm<T>(P))) {
    // one pixel: GEMV; two: wide tiles with the weights as vectors (also forced by "col" for one, so tests
    // cover both); more: the pixels as vectors.
    if (P.N * P.H * P.W == 1 && P.algo == 0)
      col_gemv(P, x, w, y, ep, threads);
    else if (P.N * P.H * P.W <= 2)
      col_gemm(P, x, w, y, ep, threads);
    else
      col_gemm_ct(P, x, w, y, ep, threads);
  }
  else
    phase_gemm(P, x, w, y, ep, threads);
}

}  // namespace

void conv_transpose2d_forward_kernel(const ConvTranspose2dProblem& P, const float* x, const float* w,
                                     const float* bias, const float* scale, const float* shift, float* y,
                                     int threads) {
  forward_impl(P, x, w, bias, scale, shift, y, threads);
}
void conv_transpose2d_forward_kernel(const ConvTranspose2dProblem& P, const double* x, const double* w,
                                     const double* bias, const double* scale, const double* shift, double* y,
                                     int threads) {
  forward_impl(P, x, w, bias, scale, shift, y, threads);
}

}  // namespace GENRT_ISA_NS
}  // namespace genrt
