//! Convolution kernels of the cnn engine.
//!
//! The core idea is Caffe's "3D-to-2D trick": [`im2col()`] unfolds every receptive field of an
//! image `[c, h, w]` into a column of a matrix `[c*kh*kw, oh*ow]`, so a convolution becomes one
//! GEMM `W[k, c*kh*kw] x cols` per image and group ([`conv2d`]), run on the crate's own packed
//! GEMM ([`packed`]: weights packed once into [`PackedWeights`], columns unfolded straight into
//! panels, a micro-kernel per instruction set chosen at run time: AVX-512F 6x32, AVX2+FMA
//! 6x16, portable); layers with many channels skip
//! the unfolding and read the matrix in place from a channels-last copy of the input
//! ([`channels_last`]). Beside it live the fast paths
//! (1x1 convolutions need no unfolding; depthwise runs a direct kernel), the naive direct
//! convolution every fast path is tested against ([`conv2d_direct`]), locally connected layers,
//! pooling, dense layers and activations. Which path a convolution takes is decided in one
//! place, and [`describe`] reports it with the buffers it allocates, without running anything.
//!
//! This crate knows nothing of layers, model files or the command line: it takes flat `f32`
//! slices in NCHW order plus a resolved geometry, and writes into a caller-provided output.

pub mod activation;
pub mod channels_last;
pub mod conv;
pub mod dense;
pub mod depthwise;
pub mod direct;
pub mod error;
mod gemm;
pub mod geometry;
pub mod im2col;
pub mod isa;
mod lanes;
pub mod local;
mod microkernel;
pub mod packed;
pub mod pool;
mod scratch;
pub mod transposed;
pub mod vmath;
pub mod winograd;

pub use activation::{softmax_channels, Activation};
pub use conv::{
    column_buffer_len, conv2d, conv2d_im2col_plain, conv2d_packed, conv2d_packed_onto, describe,
    ConvPath, PathKind, COL_TILE_BYTES,
};
pub use dense::{dense, dense_direct};
pub use depthwise::depthwise_conv2d;
pub use direct::conv2d_direct;
pub use error::KernelError;
pub use geometry::{
    resolve_window, Conv2dGeometry, Conv2dSpec, GeometryError, Padding, Pool2dGeometry, Pool2dSpec,
};
pub use im2col::{im2col, im2col_rows};
pub use isa::Isa;
pub use local::{locally_connected2d, locally_connected2d_direct};
pub use microkernel::{Kernel, KernelInfo};
pub use packed::PackedWeights;
pub use pool::{avg_pool2d, global_avg_pool2d, global_max_pool2d, max_pool2d};
pub use transposed::{conv_transpose2d, conv_transpose2d_direct, ConvTranspose2dGeometry};
