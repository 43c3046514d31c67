//! The GEMM kernel build a report names: which instruction set, the tile it computes, and how
//! to pick another (`CNN_KERNEL`), in words for the terminal and as a JSON object. Shared by
//! `cnn explain` and `cnn bench`; it describes, it does not choose (`cnn_conv::isa` does).

use cnn_conv::isa::{Isa, KERNEL_VAR};
use cnn_conv::Kernel;
use serde::Serialize;

/// The `gemm_kernel` object of `explain` and `bench` JSON.
#[derive(Debug, Clone, Serialize)]
pub struct KernelJson {
    /// The build (`avx512`, `avx2`, `portable`), as `CNN_KERNEL` takes it.
    pub name: &'static str,
    /// Rows of the micro-kernel's tile (values broadcast per step).
    pub mr: usize,
    /// Columns of the tile (values per step held in vectors).
    pub nr: usize,
    /// `f32` lanes per vector.
    pub lanes: usize,
    /// How the operands are packed.
    pub packing: &'static str,
    /// What the tile's stores apply.
    pub epilogues: &'static str,
}

impl KernelJson {
    /// The build the GEMMs run on now.
    pub fn selected() -> Self {
        let i = Kernel::selected().info();
        Self {
            name: i.name,
            mr: i.mr,
            nr: i.nr,
            lanes: i.lanes,
            packing: i.packing,
            epilogues: i.epilogues,
        }
    }

    /// `avx2, 6x16 tiles (2 vectors of 8 lanes per row)`.
    pub fn words(&self) -> String {
        let shape = format!("{}, {}x{} tiles", self.name, self.mr, self.nr);
        match self.lanes {
            1 => format!("{shape} (plain arithmetic the compiler vectorises)"),
            l => format!("{shape} ({} vectors of {l} lanes per row)", self.nr / l),
        }
    }
}

/// `CNN_KERNEL=avx512|avx2|neon|portable`: every build's name.
pub fn override_hint() -> String {
    let names: Vec<&str> = Isa::ALL.iter().map(|i| i.name()).collect();
    format!("{KERNEL_VAR}={}", names.join("|"))
}
