// CUDA rasterizer: one block per (image, 16x16 pixel tile). The block walks the faces in chunks of
// 256: each thread tests one face's screen box (precomputed by raster_boxes_kernel) against the
// tile and appends overlapping faces to a shared list; then every thread (one pixel) tests the
// listed faces and keeps its K nearest in registers. Same per-pixel arithmetic as the CPU kernel
// (rasterize.h); ties are broken by face index, so the result does not depend on list order.
#include <cuda_runtime.h>

#include "rasterize.h"

namespace ntdm {
namespace {

constexpr int kTile = 16;
constexpr int kThreads = kTile * kTile;

template <typename T>
__global__ void raster_boxes_kernel(const T* verts, const int64_t* faces, RasterShape sh, RasterOpts o,
                                    FaceBox* boxes) {
  const int64_t item = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (item >= sh.N * sh.F) return;
  const int64_t n = item / sh.F, f = item % sh.F;
  FaceVerts<T> fv;
  FaceBox box{1, 0, 1, 0};
  FaceBox b;
  if (load_face(verts, faces, sh, n, f, o.cull, &fv) && face_box(fv, sh, T(o.blur), &b)) box = b;
  boxes[item] = box;
}

template <typename T>
__global__ void raster_tiles_kernel(const T* verts, const int64_t* faces, RasterShape sh, RasterOpts o,
                                    const FaceBox* boxes, int64_t tiles_x, int64_t* pix_to_face) {
  __shared__ int s_list[kThreads];
  __shared__ int s_count;
  const int tid = threadIdx.y * kTile + threadIdx.x;
  const int64_t n = blockIdx.y;
  const int64_t tx0 = (blockIdx.x % tiles_x) * kTile, ty0 = (blockIdx.x / tiles_x) * kTile;
  const int64_t x = tx0 + threadIdx.x, y = ty0 + threadIdx.y;
  const bool active = x < sh.W && y < sh.H;
  const int K = (int)sh.K;
  const T blur2 = T(o.blur * o.blur);
  const T px = T(x) + T(0.5), py = T(y) + T(0.5);
  T zs[kMaxKCuda];
  int64_t fs[kMaxKCuda];
  for (int k = 0; k < K; ++k) fs[k] = -1;
  int count = 0;
  if (tid == 0) s_count = 0;
  __syncthreads();
  const FaceBox* bx = boxes + n * sh.F;
  for (int64_t chunk = 0; chunk < sh.F; chunk += kThreads) {
    const int64_t f = chunk + tid;
    if (f < sh.F) {
      const FaceBox b = bx[f];
      if (b.x0 <= b.x1 && b.x1 >= tx0 && b.x0 < tx0 + kTile && b.y1 >= ty0 && b.y0 < ty0 + kTile) {
        const int pos = atomicAdd(&s_count, 1);
        s_list[pos] = (int)f;
      }
    }
    __syncthreads();
    const int m = s_count;
    if (active) {
      for (int i = 0; i < m; ++i) {
        const int fi = s_list[i];
        const FaceBox b = bx[fi];
        if (x < b.x0 || x > b.x1 || y < b.y0 || y > b.y1) continue;
        FaceVerts<T> fv;
        load_face(verts, faces, sh, n, fi, o.cull, &fv);
        T z;
        if (!pixel_test(fv, px, py, o, blur2, &z)) continue;
        insert_k(zs, fs, &count, K, z, (int64_t)fi);
      }
    }
    __syncthreads();
    if (tid == 0) s_count = 0;
    __syncthreads();
  }
  if (!active) return;
  int64_t* out = pix_to_face + ((n * sh.H + y) * sh.W + x) * K;
  for (int k = 0; k < K; ++k) out[k] = fs[k];
}

}  // namespace

template <typename T>
void raster_cuda(const T* verts, const int64_t* faces, RasterShape sh, RasterOpts o, FaceBox* boxes,
                 int64_t* pix_to_face, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const int64_t items = sh.N * sh.F;
  if (items > 0) {
    const int threads = 256;
    const unsigned blocks = (unsigned)((items + threads - 1) / threads);
    raster_boxes_kernel<T><<<blocks, threads, 0, s>>>(verts, faces, sh, o, boxes);
  }
  const int64_t tiles_x = (sh.W + kTile - 1) / kTile, tiles_y = (sh.H + kTile - 1) / kTile;
  // images beyond the grid's y limit go in further launches
  const int64_t max_y = 65535;
  for (int64_t n0 = 0; n0 < sh.N; n0 += max_y) {
    const int64_t nn = sh.N - n0 < max_y ? sh.N - n0 : max_y;
    RasterShape part = sh;
    part.N = nn;
    dim3 grid((unsigned)(tiles_x * tiles_y), (unsigned)nn);
    dim3 block(kTile, kTile);
    raster_tiles_kernel<T><<<grid, block, 0, s>>>(verts + n0 * sh.V * 3, faces, part, o, boxes + n0 * sh.F,
                                                  tiles_x, pix_to_face + n0 * sh.H * sh.W * sh.K);
  }
}

template void raster_cuda<float>(const float*, const int64_t*, RasterShape, RasterOpts, FaceBox*, int64_t*,
                                 void*);
template void raster_cuda<double>(const double*, const int64_t*, RasterShape, RasterOpts, FaceBox*,
                                  int64_t*, void*);

}  // namespace ntdm
