//! How a picture becomes a network input — the *recipe*: resize (to the input, the shorter side
//! to N, or to H x W; area-averaging or antialiased bilinear), centre crop, channel order (RGB
//! or BGR), `x = (p * scale - mean[c]) / std[c]` (after an optional `255 - p`), the input layout
//! (NCHW or NHWC), class labels, and whether to rank softmax probabilities of raw scores.
//!
//! A recipe is built in layers, each setting only the keys it names, later layers winning:
//! the model file's `[input]` table (model files) or nothing (ONNX files); `--preset NAME`; a
//! sidecar TOML file (`--preprocess FILE`, else `<model>.preprocess.toml` next to an ONNX file;
//! its own `preset` key is applied before its other keys); the other command-line flags.
//! [`Recipe::fit`] then checks the recipe against the model's input and says which size and
//! layout the picture must take. Decoding and the pixel arithmetic are in `pictures`.

use cnn_model::Preprocess;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The torchvision ImageNet class names, in class order (`models/imagenet_classes.txt`).
const IMAGENET_LABELS: &str = include_str!("../models/imagenet_classes.txt");

/// The named presets.
pub const PRESETS: &str = "imagenet";

/// How the picture is resized before the crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// Straight to the final size (the crop's, else the model input's).
    ToInput,
    /// The shorter side to N, the longer one in proportion (rounded down), as torchvision's
    /// `Resize(N)`.
    ShorterSide(usize),
    /// To exactly height x width.
    Exact(usize, usize),
}

/// The resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Each output pixel is the mean of the source area it covers (block mean on integer
    /// downscales).
    Area,
    /// Bilinear with antialiasing on downscales (a triangle filter widened by the scale
    /// factor, as PIL and torchvision's `antialias=True`), on 8-bit pixels.
    Bilinear,
}

/// The order of colour channels the network expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

/// Where the channel axis is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Batch, channels, height, width (PyTorch).
    Nchw,
    /// Batch, height, width, channels (Keras/TensorFlow).
    Nhwc,
}

/// The full recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    pub resize: Resize,
    pub crop: Option<(usize, usize)>,
    pub filter: Filter,
    /// Invert, scale, mean and std (mean/std in the network's channel order).
    pub pixels: Preprocess,
    pub channel_order: ChannelOrder,
    /// `None`: decided from the model's input shape.
    pub layout: Option<Layout>,
    pub labels: Option<Vec<String>>,
    /// Rank softmax probabilities of the outputs (ignored when the model ends in softmax).
    pub softmax: bool,
    /// Where the keys came from, for the report (`[input]`, `preset imagenet`, a file, flags).
    pub sources: Vec<String>,
}

/// The input a picture must become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub layout: Layout,
}

/// A size as written: one number (a square, or the shorter side for `resize`) or `[h, w]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
enum SizeKey {
    One(usize),
    Two([usize; 2]),
}

/// Labels as written: a text file (one per line, relative to the sidecar) or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum LabelsKey {
    File(String),
    List(Vec<String>),
}

/// The keys of a sidecar file (and, parsed from text, of the command-line flags).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    preset: Option<String>,
    resize: Option<SizeKey>,
    crop: Option<SizeKey>,
    filter: Option<String>,
    invert: Option<bool>,
    scale: Option<f64>,
    mean: Option<Vec<f64>>,
    std: Option<Vec<f64>>,
    channel_order: Option<String>,
    layout: Option<String>,
    labels: Option<LabelsKey>,
    softmax: Option<bool>,
}

/// The `cnn run` flags that shape the recipe.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct RecipeFlags {
    /// Start from a named preprocessing (imagenet: shorter side 256 bilinear, centre crop 224,
    /// RGB, ImageNet mean/std, the 1000 ImageNet labels, softmax)
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// A preprocessing sidecar file (TOML; default for model.onnx: model.preprocess.toml)
    #[arg(long, value_name = "FILE")]
    pub preprocess: Option<PathBuf>,
    /// Resize pictures: N (the shorter side to N) or HxW
    #[arg(long, value_name = "N|HxW")]
    pub resize: Option<String>,
    /// Centre crop after resizing: N (a square) or HxW
    #[arg(long, value_name = "N|HxW")]
    pub crop: Option<String>,
    /// Resampling: area (block mean) or bilinear (antialiased, as PIL/torchvision)
    #[arg(long, value_name = "NAME")]
    pub filter: Option<String>,
    /// Multiply 8-bit pixels by this (default 1/255)
    #[arg(long, value_name = "X")]
    pub scale: Option<f64>,
    /// Subtract per channel after scaling: one value, or one per channel (a,b,c)
    #[arg(long, value_name = "LIST")]
    pub mean: Option<String>,
    /// Divide per channel after the mean: one value, or one per channel (a,b,c)
    #[arg(long, value_name = "LIST")]
    pub std: Option<String>,
    /// Channel order the network expects: rgb or bgr
    #[arg(long, value_name = "ORDER")]
    pub channel_order: Option<String>,
    /// Input layout of an ONNX model: nchw or nhwc (default: from its input shape)
    #[arg(long, value_name = "LAYOUT")]
    pub layout: Option<String>,
    /// Class names, one per line
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Rank softmax probabilities of the outputs (for a model that ends in raw scores)
    #[arg(long)]
    pub softmax: bool,
}

impl Recipe {
    /// A model file's recipe: its `[input]` preprocessing and labels, resized to the input
    /// by area averaging.
    pub fn of_model_file(pixels: &Preprocess, labels: Option<&[String]>) -> Recipe {
        Recipe {
            pixels: pixels.clone(),
            labels: labels.map(<[String]>::to_vec),
            layout: Some(Layout::Nchw),
            sources: vec!["the model file's [input]".to_string()],
            ..Recipe::plain()
        }
    }

    /// No preprocessing beyond `p / 255`, resized to the input by area averaging.
    pub fn plain() -> Recipe {
        Recipe {
            resize: Resize::ToInput,
            crop: None,
            filter: Filter::Area,
            pixels: Preprocess::new(),
            channel_order: ChannelOrder::Rgb,
            layout: None,
            labels: None,
            softmax: false,
            sources: Vec::new(),
        }
    }

    /// Sets every key of preset `name`.
    fn apply_preset(&mut self, name: &str) -> Result<(), String> {
        match name {
            "imagenet" => {
                *self = Recipe {
                    resize: Resize::ShorterSide(256),
                    crop: Some((224, 224)),
                    filter: Filter::Bilinear,
                    pixels: Preprocess {
                        invert: false,
                        scale: 1.0 / 255.0,
                        mean: vec![0.485, 0.456, 0.406],
                        std: vec![0.229, 0.224, 0.225],
                    },
                    channel_order: ChannelOrder::Rgb,
                    layout: self.layout,
                    labels: Some(IMAGENET_LABELS.lines().map(str::to_string).collect()),
                    softmax: true,
                    sources: std::mem::take(&mut self.sources),
                };
                Ok(())
            }
            other => Err(format!(
                "unknown preset '{other}'; the presets are: {PRESETS}"
            )),
        }
    }

    /// Applies the keys present in `keys`; `base` resolves a labels file's path; `at` names the
    /// source in messages.
    fn apply(&mut self, keys: Keys, base: &Path, at: &str) -> Result<(), String> {
        let bad = |key: &str, why: String| format!("{at}: {key}: {why}");
        if let Some(p) = &keys.preset {
            self.apply_preset(p).map_err(|e| bad("preset", e))?;
        }
        if let Some(r) = keys.resize {
            self.resize = match r {
                SizeKey::One(n) => Resize::ShorterSide(positive(n).map_err(|e| bad("resize", e))?),
                SizeKey::Two([h, w]) => Resize::Exact(
                    positive(h).map_err(|e| bad("resize", e))?,
                    positive(w).map_err(|e| bad("resize", e))?,
                ),
            };
        }
        if let Some(c) = keys.crop {
            let (h, w) = match c {
                SizeKey::One(n) => (n, n),
                SizeKey::Two([h, w]) => (h, w),
            };
            self.crop = Some((
                positive(h).map_err(|e| bad("crop", e))?,
                positive(w).map_err(|e| bad("crop", e))?,
            ));
        }
        if let Some(f) = &keys.filter {
            self.filter = match f.as_str() {
                "area" => Filter::Area,
                "bilinear" => Filter::Bilinear,
                _ => return Err(bad("filter", format!("'{f}'; use area or bilinear"))),
            };
        }
        if let Some(i) = keys.invert {
            self.pixels.invert = i;
        }
        if let Some(s) = keys.scale {
            // Checked as the f32 it becomes (1e300 would be infinite, 1e-300 zero).
            let f = s as f32;
            if !f.is_finite() || f == 0.0 {
                return Err(bad(
                    "scale",
                    format!("{s}; give a finite non-zero number within f32's range"),
                ));
            }
            self.pixels.scale = f;
        }
        if let Some(m) = &keys.mean {
            self.pixels.mean = finite_list(m, false).map_err(|e| bad("mean", e))?;
        }
        if let Some(s) = &keys.std {
            self.pixels.std = finite_list(s, true).map_err(|e| bad("std", e))?;
        }
        if let Some(o) = &keys.channel_order {
            self.channel_order = match o.to_ascii_lowercase().as_str() {
                "rgb" => ChannelOrder::Rgb,
                "bgr" => ChannelOrder::Bgr,
                _ => return Err(bad("channel_order", format!("'{o}'; use rgb or bgr"))),
            };
        }
        if let Some(l) = &keys.layout {
            self.layout = Some(match l.to_ascii_lowercase().as_str() {
                "nchw" => Layout::Nchw,
                "nhwc" => Layout::Nhwc,
                _ => return Err(bad("layout", format!("'{l}'; use nchw or nhwc"))),
            });
        }
        match keys.labels {
            Some(LabelsKey::List(l)) => self.labels = Some(l),
            Some(LabelsKey::File(f)) => self.labels = Some(read_labels(&base.join(f))?),
            None => {}
        }
        if let Some(s) = keys.softmax {
            self.softmax = s;
        }
        self.sources.push(at.to_string());
        Ok(())
    }

    /// Layers `--preset`, the sidecar (`--preprocess`, else `auto_sidecar` when it exists) and
    /// the other flags over `self`. Returns whether any layer was applied.
    pub fn layer(
        &mut self,
        flags: &RecipeFlags,
        auto_sidecar: Option<&Path>,
    ) -> Result<bool, String> {
        let before = self.sources.len();
        if let Some(p) = &flags.preset {
            self.apply_preset(p).map_err(|e| format!("--preset: {e}"))?;
            self.sources.push(format!("preset {p}"));
        }
        let sidecar = match (&flags.preprocess, auto_sidecar) {
            (Some(file), _) => Some(file.as_path()),
            (None, Some(auto)) if auto.is_file() => Some(auto),
            _ => None,
        };
        if let Some(file) = sidecar {
            let (keys, base) = read_sidecar(file)?;
            self.apply(keys, &base, &file.display().to_string())?;
        }
        let keys = flag_keys(flags)?;
        let given = keys.resize.is_some()
            || keys.crop.is_some()
            || keys.filter.is_some()
            || keys.scale.is_some()
            || keys.mean.is_some()
            || keys.std.is_some()
            || keys.channel_order.is_some()
            || keys.layout.is_some()
            || keys.softmax.is_some();
        if given {
            self.apply(keys, Path::new(""), "the command line")?;
        }
        if let Some(file) = &flags.labels {
            self.labels = Some(read_labels(file)?);
            self.sources.push(format!("labels from {}", file.display()));
        }
        Ok(self.sources.len() > before)
    }

    /// Where a picture must end: the model's `[C, H, W]` (NCHW) or `[H, W, C]` item shape given
    /// as the declared input dimensions after the batch (`None` for a symbolic size).
    pub fn fit(&self, item_dims: &[Option<usize>]) -> Result<Target, String> {
        let [a, b, c] = item_dims else {
            return Err(format!(
                "the model's input has {} dimensions after the batch; pictures make 3 \
                 (channels, height, width)",
                item_dims.len()
            ));
        };
        let is_colour = |d: &Option<usize>| matches!(d, Some(1 | 3));
        let layout = match self.layout {
            Some(l) => l,
            None if is_colour(a) => Layout::Nchw,
            None if is_colour(c) => Layout::Nhwc,
            None => {
                return Err(format!(
                    "cannot tell the channel axis of the input {}: neither the first nor the \
                     last dimension is 1 or 3; set layout (nchw or nhwc)",
                    show_dims(item_dims)
                ))
            }
        };
        let (channels, h, w) = match layout {
            Layout::Nchw => (a, b, c),
            Layout::Nhwc => (c, a, b),
        };
        let channels = match channels {
            Some(n @ (1 | 3)) => *n,
            other => {
                return Err(format!(
                    "the model takes {} channels ({} input {}), but pictures give 1 (gray) or \
                     3 (colour)",
                    other.map_or("a symbolic number of".to_string(), |n| n.to_string()),
                    if layout == Layout::Nchw {
                        "NCHW"
                    } else {
                        "NHWC"
                    },
                    show_dims(item_dims)
                ))
            }
        };
        for (key, values) in [("mean", &self.pixels.mean), ("std", &self.pixels.std)] {
            if values.len() != 1 && values.len() != channels {
                return Err(format!(
                    "{key} has {} values; the model takes {channels} channels (give one per \
                     channel, or one for all)",
                    values.len()
                ));
            }
        }
        if let (Resize::ShorterSide(n), None) = (self.resize, self.crop) {
            // The size would depend on each picture's proportions.
            return Err(format!(
                "resize {n} (the shorter side) needs a crop to reach the model's input size"
            ));
        }
        let fixed = match self.crop {
            Some(crop) => Some(crop),
            None => match self.resize {
                Resize::Exact(h, w) => Some((h, w)),
                _ => None,
            },
        };
        let (height, width) = match (h, w, fixed) {
            (Some(h), Some(w), Some(size)) if size != (*h, *w) => {
                return Err(format!(
                    "the preprocessing makes {}x{} pictures, but the model takes {h}x{w}; set \
                     crop (or resize) to {h}x{w}",
                    size.0, size.1
                ))
            }
            (Some(h), Some(w), _) => (*h, *w),
            (_, _, Some(size)) => size,
            _ => {
                return Err(format!(
                    "the model's input size is symbolic ({}); set crop, or resize to HxW",
                    show_dims(item_dims)
                ))
            }
        };
        Ok(Target {
            channels,
            height,
            width,
            layout,
        })
    }

    /// The size (width, height) a `w` x `h` picture is resized to before the crop, for
    /// `target`: torchvision's rule for the shorter side (the longer one rounded down).
    pub fn resized_size(&self, w: usize, h: usize, target: &Target) -> (usize, usize) {
        match self.resize {
            Resize::ToInput => self
                .crop
                .map_or((target.width, target.height), |(ch, cw)| (cw, ch)),
            Resize::Exact(h, w) => (w, h),
            Resize::ShorterSide(n) => {
                let long = |l: usize, s: usize| ((n as f64 * l as f64 / s as f64) as usize).max(1);
                if w <= h {
                    (n, long(h, w))
                } else {
                    (long(w, h), n)
                }
            }
        }
    }

    /// One line on what happens to each picture, for the report.
    pub fn describe(&self, target: &Target) -> String {
        let filter = match self.filter {
            Filter::Area => "area",
            Filter::Bilinear => "bilinear",
        };
        let mut steps = vec![match self.resize {
            Resize::ToInput => format!("resize to {}x{} ({filter})", target.height, target.width),
            Resize::ShorterSide(n) => format!("shorter side to {n} ({filter})"),
            Resize::Exact(h, w) => format!("resize to {h}x{w} ({filter})"),
        }];
        if let Some((h, w)) = self.crop {
            steps.push(format!("centre crop {h}x{w}"));
        }
        steps.push(match (target.channels, self.channel_order) {
            (1, _) => "gray".to_string(),
            (_, ChannelOrder::Rgb) => "RGB".to_string(),
            (_, ChannelOrder::Bgr) => "BGR".to_string(),
        });
        let p = &self.pixels;
        let pixel = if p.invert { "(255 - p)" } else { "p" };
        let scaled = if (p.scale * 255.0 - 1.0).abs() < 1e-6 {
            format!("{pixel} / 255")
        } else {
            format!("{pixel} * {}", p.scale)
        };
        steps.push(format!(
            "x = ({scaled} - mean) / std, mean {:?}, std {:?}",
            p.mean, p.std
        ));
        steps.push(match target.layout {
            Layout::Nchw => "NCHW".to_string(),
            Layout::Nhwc => "NHWC".to_string(),
        });
        format!("{} (from {})", steps.join(", "), self.sources.join(" + "))
    }
}

/// The largest side a picture is resized or cropped to.
pub const MAX_SIDE: usize = 16384;

/// `n` when it is 1 to [`MAX_SIDE`].
fn positive(n: usize) -> Result<usize, String> {
    if n == 0 || n > MAX_SIDE {
        Err(format!("{n}: sizes are 1 to {MAX_SIDE}"))
    } else {
        Ok(n)
    }
}

/// Finite values (positive when `positive`), as f32.
fn finite_list(values: &[f64], positive: bool) -> Result<Vec<f32>, String> {
    if values.is_empty() {
        return Err("give one value, or one per channel".to_string());
    }
    // Checked as the f32 values they become (1e300 would be infinite, 1e-300 zero).
    let cast: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    if cast
        .iter()
        .any(|&v| !v.is_finite() || (positive && v <= 0.0))
    {
        return Err(format!(
            "{values:?}: values must be finite{} within f32's range",
            if positive { " and positive" } else { "" }
        ));
    }
    Ok(cast)
}

/// `[?, 224, 224]`-style dims.
fn show_dims(dims: &[Option<usize>]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| d.map_or("?".to_string(), |v| v.to_string()))
        .collect();
    format!("[{}]", parts.join(", "))
}

/// Most bytes a sidecar or labels file may have.
const MAX_TEXT_BYTES: u64 = 4 << 20;

/// Reads a small text file (a sidecar or labels), refusing a huge one before reading it.
fn read_text(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| crate::file_error(path, "open", &e))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    if meta.len() > MAX_TEXT_BYTES {
        return Err(format!(
            "{}: {} bytes; a preprocessing or labels file is at most {MAX_TEXT_BYTES}",
            path.display(),
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| crate::file_error(path, "read", &e))?;
    String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", path.display()))
}

/// Class names, one per line (blank trailing lines ignored).
pub fn read_labels(path: &Path) -> Result<Vec<String>, String> {
    let text = read_text(path)?;
    let labels: Vec<String> = text
        .trim_end_matches(['\n', '\r'])
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect();
    if labels.is_empty() || labels.iter().all(String::is_empty) {
        return Err(format!("{}: the labels file is empty", path.display()));
    }
    Ok(labels)
}

/// A sidecar's keys and its folder (for a labels file).
fn read_sidecar(path: &Path) -> Result<(Keys, PathBuf), String> {
    let text = read_text(path)?;
    let keys: Keys = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(1);
        let message = e
            .message()
            .lines()
            .next()
            .unwrap_or("invalid TOML")
            .to_string();
        format!("{}: line {line}: {message}", path.display())
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok((keys, base))
}

/// `N` or `HxW`.
fn size_flag(flag: &str, text: &str) -> Result<SizeKey, String> {
    let num = |s: &str| {
        s.trim()
            .parse::<usize>()
            .map_err(|_| format!("--{flag} {text}: give N or HxW (whole numbers)"))
    };
    match text.split_once(['x', 'X']) {
        Some((h, w)) => Ok(SizeKey::Two([num(h)?, num(w)?])),
        None => Ok(SizeKey::One(num(text)?)),
    }
}

/// `a,b,c`.
fn list_flag(flag: &str, text: &str) -> Result<Vec<f64>, String> {
    text.split(',')
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .map_err(|_| format!("--{flag} {text}: give numbers separated by commas"))
        })
        .collect()
}

/// The flags as recipe keys (labels and the sidecar are handled by [`Recipe::layer`]).
fn flag_keys(f: &RecipeFlags) -> Result<Keys, String> {
    Ok(Keys {
        preset: None,
        resize: f
            .resize
            .as_deref()
            .map(|t| size_flag("resize", t))
            .transpose()?,
        crop: f
            .crop
            .as_deref()
            .map(|t| size_flag("crop", t))
            .transpose()?,
        filter: f.filter.clone(),
        invert: None,
        scale: f.scale,
        mean: f
            .mean
            .as_deref()
            .map(|t| list_flag("mean", t))
            .transpose()?,
        std: f.std.as_deref().map(|t| list_flag("std", t)).transpose()?,
        channel_order: f.channel_order.clone(),
        layout: f.layout.clone(),
        labels: None,
        softmax: f.softmax.then_some(true),
    })
}

/// The sidecar looked for next to `model`: `model.onnx` → `model.preprocess.toml`.
pub fn sidecar_of(model: &Path) -> PathBuf {
    model.with_extension("preprocess.toml")
}

#[cfg(test)]
mod tests;
