// The tile transforms of the Winograd convolution, one set per F(m x m, r x r), over a
// block of tiles. Forward and input gradient: tiles are the vector lanes, transformed tiles
// stored [position xi][channel][tile], so each of the alpha^2 products (summed over
// channels) reads its operand in place. Weight gradient (summed over tiles): channels are
// the lanes, stored [xi][tile][channel] (conv_winograd_tiles_cl.cpp).
#pragma once
#include <cstdint>

namespace metalnn::cpu::winograd {

// One convolution as the transforms see it: th x tw tiles of m x m outputs per image, C
// input channels and O output channels. The transforms read and write tile-aligned planes
// (the caller pads and clips): inputs (C, th*m + r - 1, tw*m + r - 1), zero padded, tile
// (i, j) reading rows i*m.., columns j*m..; outputs and output gradients (O, th*m, tw*m).
struct Geometry {
  int64_t C, O, th, tw, m, r;
  int64_t in_h() const { return th * m + r - 1; }
  int64_t in_w() const { return tw * m + r - 1; }
  int64_t out_h() const { return th * m; }
  int64_t out_w() const { return tw * m; }
};

// Tiles [0, count) of a block are the global tile rows [first_row, first_row + rows) in order
// (global row = image * th + tile row); lanes >= count is the padded row length of the
// transformed buffers (lanes past count hold zeros). Image pointers are indexed by
// image - first_image.
struct TileBlock {
  int64_t first_row, rows, tw, th, lanes;
  int64_t count() const { return rows * tw; }
  // Floats from one position's (channels x lanes) matrix to the next, and from one staged
  // row of lanes to the next: padded off powers of two so the strided rows of a tile do
  // not all land in the same L1 set.
  int64_t xi_stride(int64_t channels) const { return channels * lanes + 16; }
  int64_t stage_stride() const { return lanes + 16; }
  int64_t first_image() const { return first_row / th; }
  int64_t last_image() const { return (first_row + rows - 1) / th; }
};

struct Kernels {
  int m, r, alpha;
  // U from w (O, C, r, r), each position's O x C matrix packed as the GEMM's A operand:
  // panels of mr rows, U[xi * stride + (o / mr) * mr * C + c * mr + o % mr], rows past O
  // zero; stride >= weights_panel_size. flip: w is (C, O, r, r) and read rotated by 180
  // degrees (the input gradient as a forward convolution).
  void (*weights)(const float* w, int64_t O, int64_t C, bool flip, int mr, int64_t stride, float* U);
  // V[xi * xi_stride(C) + c * lanes + t]: input tiles of the block from padded input planes
  // (8 readable floats past the last plane's end).
  void (*input)(const Geometry& g, const TileBlock& b, const float* const* images, float* V, float* stage);
  // Output tiles from Mb[xi * xi_stride(O) + o * lanes + t] into output planes.
  void (*output)(const Geometry& g, const TileBlock& b, const float* Mb, float* const* images);
  // The weight gradient's operands, channel-last so that its products (summed over the
  // tiles) read both in place: from channel-last planes (rows, columns, Cp) with
  // Cp = channel_pad(C) (channels past C zero),
  //   V[xi * cl_stride(b, Cp) + t * Cp + c]   (input tiles, like `input`), and
  //   dM[xi * cl_stride(b, Op) + t * Op + o]  (the adjoint of `output`, A dy A^T).
  void (*input_cl)(const Geometry& g, const TileBlock& b, const float* const* images, int64_t Cp, float* V);
  void (*output_adjoint_cl)(const Geometry& g, const TileBlock& b, const float* const* images, int64_t Op,
                            float* dM);
  // The adjoint of `weights` (no flip): dw (O, C, r, r) from dU[(xi * O + o) * C + c].
  void (*weights_adjoint)(const float* dU, int64_t O, int64_t C, float* dw);
};

// Channels rounded up to whole vectors, and the per-position stride of a channel-last
// transformed block (padded off powers of two, as xi_stride).
int64_t channel_pad(int64_t channels);
inline int64_t cl_stride(const TileBlock& b, int64_t padded_channels) { return b.count() * padded_channels + 16; }

// Floats of one position's packed weights (rounded up to whole vectors).
int64_t weights_panel_size(int64_t O, int64_t C, int mr);

// Kernels for F(m x m, r x r), or null when that pair is not built (see the .cpp).
const Kernels* kernels_for(int m, int r);

// Floats of the staging buffer `input` needs for a block, and of its
// transformed tiles with `channels` channels.
int64_t stage_size(const Kernels& k, const TileBlock& b);
int64_t transformed_size(const Kernels& k, const TileBlock& b, int64_t channels);

}  // namespace metalnn::cpu::winograd
