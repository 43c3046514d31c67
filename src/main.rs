//! The `cnn` command line: `summary`, `explain`, `compare`, `run`, and a demo when called
//! without arguments. Every failure is one line on stderr and exit status 1 (2 for usage
//! errors); nothing a user types or feeds makes it panic.

use clap::{Parser, Subcommand, ValueEnum};
use cnn::front::{self, Front, Kind};
use cnn::model::format::parse_bytes;
use cnn::recipe::{self, Recipe, RecipeFlags};
use cnn::report::run::RunJson;
use cnn::report::{compare, explain, run, summary};
use cnn::{npy, Model};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cnn",
    version,
    about = "A CPU inference engine for convolutional networks that shows its arithmetic",
    long_about = "Loads a network from a model file, accounts for every parameter (per layer, \
                  with the formula that produced it, checked against the weights actually \
                  allocated), shows how each convolution becomes im2col + GEMM, and runs f32 \
                  forward passes. Without a command it runs a demo on the shipped models."
)]
struct Cli {
    /// Ceiling on f32 weight memory; bigger models are counted but not allocated
    /// (bytes, or with a unit: 512M, 2G, 1T)
    #[arg(long, global = true, value_name = "SIZE", default_value = "2G", value_parser = parse_bytes)]
    max_weight_bytes: u128,

    /// Seed of the random (Glorot-uniform) weights
    #[arg(long, global = true, value_name = "N", default_value_t = 0)]
    seed: u64,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum SummaryFormat {
    Table,
    Json,
    Markdown,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Write seeded random (Glorot-uniform, Keras defaults) weights for a model
    Init {
        /// Model file (.toml) or ONNX file (.onnx)
        model: PathBuf,
        /// Where to write the weights (.safetensors)
        #[arg(long, value_name = "FILE")]
        save: PathBuf,
    },
    /// Per layer: output shape, parameters, the formula behind them, MACs; then totals
    Summary {
        /// Model file (.toml) or ONNX file (.onnx)
        model: PathBuf,
        /// Check this weight file (.safetensors) against the formulas instead of allocating
        #[arg(long, value_name = "FILE", conflicts_with = "no_alloc")]
        weights: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "table")]
        format: SummaryFormat,
        /// Count only: do not allocate weights
        #[arg(long)]
        no_alloc: bool,
    },
    /// Time the forward pass: per layer median, GFLOP/s and share; latency and images/s
    Bench {
        /// Model file (.toml) or ONNX file (.onnx)
        model: PathBuf,
        /// Trained weights (.safetensors); without it, seeded random weights
        #[arg(long, value_name = "FILE")]
        weights: Option<PathBuf>,
        /// Worker threads (default: all cores)
        #[arg(long, value_name = "T", value_parser = thread_count)]
        threads: Option<u64>,
        /// Timed iterations
        #[arg(long, value_name = "N", default_value_t = 30, value_parser = at_least_one)]
        iters: u64,
        /// Untimed iterations first
        #[arg(long, value_name = "N", default_value_t = 3)]
        warmup: u64,
        /// Images per forward pass
        #[arg(long, value_name = "B", default_value_t = 1, value_parser = at_least_one)]
        batch: u64,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Per conv-like layer: the im2col matrix, the GEMM's M x K x N, the column-buffer bytes
    Explain {
        /// Model file (.toml) or ONNX file (.onnx)
        model: PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Two models side by side: where the parameters are, and why
    Compare {
        /// First model file
        a: PathBuf,
        /// Second model file
        b: PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Classify pictures (PNG/JPEG files or folders of them) or run on a float32 .npy array
    Run {
        /// Model file (.toml) or ONNX file (.onnx)
        model: PathBuf,
        /// Pictures, folders of pictures, or .npy arrays (CxHxW or NxCxHxW float32)
        inputs: Vec<PathBuf>,
        /// Trained weights (.safetensors); without it, seeded random weights (--seed)
        #[arg(long, value_name = "FILE")]
        weights: Option<PathBuf>,
        /// An input array (.npy, float32, CxHxW or NxCxHxW), as an alternative to INPUTS
        #[arg(long, value_name = "FILE")]
        input: Option<PathBuf>,
        /// Write the output array here (.npy, float32, batch first; for an ONNX model run on
        /// pictures, one item per picture in order)
        #[arg(long, value_name = "FILE")]
        save_output: Option<PathBuf>,
        /// How many classes to list per item
        #[arg(long, value_name = "K", default_value_t = 5, value_parser = at_least_one)]
        top: u64,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        recipe: Box<RecipeFlags>,
    },
}

/// A positive integer option.
fn at_least_one(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

/// `--threads`: 1 to 1024.
fn thread_count(text: &str) -> Result<u64, String> {
    match at_least_one(text)? {
        n if n > 1024 => Err("must be at most 1024".to_string()),
        n => Ok(n),
    }
}

fn plan(path: &Path) -> Result<Model, String> {
    Model::plan_file(path).map_err(|e| e.to_string())
}

/// Opens `model` for a command that takes either kind; `--weights` is refused for an ONNX
/// file before it is read (the file carries its own).
fn open(model: &Path, weights: &Option<PathBuf>, max_bytes: u128) -> Result<Front, String> {
    if Kind::of(model) == Kind::Onnx {
        no_weight_file(weights)?;
    }
    front::open(model, max_bytes)
}

/// A model file's weights: read from `file`, else seeded random ones.
fn give_weights(m: &mut Model, file: &Option<PathBuf>, seed: u64, max: u128) -> Result<(), String> {
    match file {
        Some(file) => m.load_weights(file, max),
        None => m.allocate(seed, max),
    }
    .map_err(|e| e.to_string())
}

/// `cnn run` on an ONNX file: one float32 `.npy` array or `.pb` tensor, or pictures (with
/// the recipe from `--preset`, the sidecar or the flags).
fn run_onnx(
    model: &Path,
    inputs: &[PathBuf],
    flags: &RecipeFlags,
    save_output: Option<&Path>,
    top: u64,
    max_bytes: u128,
) -> Result<RunJson, String> {
    let k = usize::try_from(top).unwrap_or(usize::MAX);
    let (arrays, pictures): (Vec<PathBuf>, Vec<PathBuf>) = inputs
        .iter()
        .cloned()
        .partition(|p| front::is_onnx_input(p));
    if !arrays.is_empty() {
        let [array] = arrays.as_slice() else {
            return Err(format!(
                "an ONNX model runs on exactly one float32 array (.npy or .pb) at a time; {} given",
                arrays.len()
            ));
        };
        if !pictures.is_empty() {
            return Err(format!(
                "{}: give either one array or pictures, not both",
                pictures[0].display()
            ));
        }
        // Only the recipe's labels and softmax apply to an array's outputs.
        let mut recipe = Recipe::plain();
        recipe.layer(flags, Some(&recipe::sidecar_of(model)))?;
        let Front::Onnx(m) = front::open(model, max_bytes)? else {
            return Err(format!("{}: not an ONNX file", model.display()));
        };
        return m.run(array, &recipe, save_output, k);
    }
    let pictures = cnn::pictures::expand_inputs(&pictures)?;
    if pictures.is_empty() {
        return Err(nothing_to_run());
    }
    let mut recipe = Recipe::plain();
    let sidecar = recipe::sidecar_of(model);
    if !recipe.layer(flags, Some(&sidecar))? {
        return Err(format!(
            "{}: pictures need the model's preprocessing: give --preset imagenet, \
             --preprocess FILE or flags such as --resize/--crop/--mean/--std, or write {} \
             (docs/onnx.md)",
            model.display(),
            sidecar.display()
        ));
    }
    let Front::Onnx(m) = front::open(model, max_bytes)? else {
        return Err(format!("{}: not an ONNX file", model.display()));
    };
    m.classify(&pictures, &recipe, save_output, k)
}

/// The message when `cnn run` has no input.
fn nothing_to_run() -> String {
    "nothing to run: give pictures, folders of pictures or .npy arrays (or --input x.npy)"
        .to_string()
}

/// `--weights` is for model files: an ONNX file holds its own.
fn no_weight_file(weights: &Option<PathBuf>) -> Result<(), String> {
    match weights {
        Some(w) => Err(format!(
            "{}: --weights applies to model files (.toml); an ONNX file carries its own weights",
            w.display()
        )),
        None => Ok(()),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, String> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| format!("cannot encode JSON: {e}"))
}

fn execute(cli: Cli) -> Result<String, String> {
    // A CNN_KERNEL the CPU cannot run is an error, not a silent fallback.
    cnn::conv::isa::requested()?;
    let max_bytes = cli.max_weight_bytes;
    let Some(command) = cli.command else {
        return cnn::demo::run(cli.seed, max_bytes);
    };
    match command {
        Command::Init { model, .. } if Kind::of(&model) == Kind::Onnx => Err(format!(
            "{}: an ONNX file carries its own weights; `cnn init` writes weights for model files (.toml)",
            model.display()
        )),
        Command::Init { model, save } => {
            let mut m = plan(&model)?;
            m.allocate(cli.seed, max_bytes).map_err(|e| e.to_string())?;
            let weights = m.weights().ok_or("no weights were allocated")?;
            cnn::model::save_weights(&m.plan, weights, &save).map_err(|e| e.to_string())?;
            Ok(format!(
                "wrote {} parameters of model `{}` (seed {}) to {}\n",
                cnn::model::format::group_digits(m.allocated_params().unwrap_or(0) as u128),
                m.name(),
                cli.seed,
                save.display()
            ))
        }
        Command::Summary {
            model,
            weights,
            format,
            no_alloc,
        } => {
            let mut f = open(&model, &weights, max_bytes)?;
            let alloc = match &mut f {
                Front::Onnx(_) => summary::Allocation::Skipped,
                Front::ModelFile(m) => {
                    if let Some(file) = &weights {
                        m.load_weights(file, max_bytes).map_err(|e| e.to_string())?;
                        summary::Allocation::Loaded(
                            m.allocated_params().unwrap_or(0),
                            file.display().to_string(),
                        )
                    } else if no_alloc {
                        summary::Allocation::Skipped
                    } else if cnn::model::weights::check_ceiling(&m.plan, max_bytes).is_err() {
                        summary::Allocation::OverCeiling {
                            bytes: m.plan.weight_bytes(),
                            ceiling: max_bytes,
                        }
                    } else {
                        m.allocate(cli.seed, max_bytes).map_err(|e| e.to_string())?;
                        summary::Allocation::Held(m.allocated_params().unwrap_or(0))
                    }
                }
            };
            let (doc, alloc, layout) = f.summary(&alloc)?;
            Ok(match format {
                SummaryFormat::Table => summary::render_doc_table(&doc, &alloc, &layout),
                SummaryFormat::Markdown => summary::render_doc_markdown(&doc, &alloc, &layout),
                SummaryFormat::Json => to_json(&doc)?,
            })
        }
        Command::Bench {
            model,
            weights,
            threads,
            iters,
            warmup,
            batch,
            format,
        } => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let to_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
            let opts = cnn::bench::BenchOptions {
                threads: threads.map_or(cores, to_usize),
                iters: to_usize(iters),
                warmup: to_usize(warmup),
                batch: to_usize(batch),
                seed: cli.seed,
            };
            let mut f = open(&model, &weights, max_bytes)?;
            if let Front::ModelFile(m) = &mut f {
                give_weights(m, &weights, cli.seed, max_bytes)?;
            }
            let report = f.bench(opts)?;
            Ok(match format {
                Format::Table => cnn::bench::render(&report),
                Format::Json => to_json(&report)?,
            })
        }
        Command::Explain { model, format } => {
            let f = front::open(&model, max_bytes)?;
            let items = f.explanations()?;
            Ok(match format {
                Format::Table => explain::render_named(f.name(), &items),
                Format::Json => to_json(&explain::ExplainDoc {
                    model: f.name().to_string(),
                    kernel: cnn::conv::isa::selected().name(),
                    gemm_kernel: cnn::report::kernel::KernelJson::selected(),
                    layers: &items,
                })?,
            })
        }
        Command::Compare { a, b, .. } if Kind::of(&a) == Kind::Onnx || Kind::of(&b) == Kind::Onnx => {
            let onnx = if Kind::of(&a) == Kind::Onnx { a } else { b };
            Err(format!(
                "{}: `cnn compare` reads model files (.toml); for an ONNX file use `cnn summary`",
                onnx.display()
            ))
        }
        Command::Compare { a, b, format } => {
            let (a, b) = (plan(&a)?, plan(&b)?);
            Ok(match format {
                Format::Table => compare::render(&a.plan, &b.plan),
                Format::Json => to_json(&compare::to_json(&a.plan, &b.plan))?,
            })
        }
        Command::Run {
            model,
            inputs,
            weights,
            input,
            save_output,
            top,
            format,
            recipe: flags,
        } => {
            // Every input in command-line order (--input first).
            let mut paths: Vec<PathBuf> = input.into_iter().collect();
            paths.extend(inputs);
            let doc = if Kind::of(&model) == Kind::Onnx {
                no_weight_file(&weights)?;
                run_onnx(&model, &paths, &flags, save_output.as_deref(), top, max_bytes)?
            } else {
                run_model_file(&model, &paths, &weights, &flags, save_output.as_deref(), top, cli.seed, max_bytes)?
            };
            Ok(match format {
                Format::Table => run::render(&doc, usize::try_from(top).unwrap_or(usize::MAX)),
                Format::Json => to_json(&doc)?,
            })
        }
    }
}

/// `cnn run` on a model file: `.npy` arrays and pictures (the model file's `[input]` recipe,
/// with the flags layered over it).
#[allow(clippy::too_many_arguments)]
fn run_model_file(
    model: &Path,
    paths: &[PathBuf],
    weights: &Option<PathBuf>,
    flags: &RecipeFlags,
    save_output: Option<&Path>,
    top: u64,
    seed: u64,
    max_bytes: u128,
) -> Result<RunJson, String> {
    let mut m = plan(model)?;
    // Arrays and pictures are read and decoded before the (possibly large) weights, so a bad
    // input fails fast.
    let paths = cnn::pictures::expand_inputs(paths)?;
    let is_array = |p: &&PathBuf| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    let (arrays, pictures): (Vec<&PathBuf>, Vec<&PathBuf>) = paths.iter().partition(is_array);
    let pictures: Vec<PathBuf> = pictures.into_iter().cloned().collect();
    if paths.is_empty() {
        return Err(nothing_to_run());
    }
    if save_output.is_some() && (arrays.len() != 1 || !pictures.is_empty()) {
        return Err("--save-output needs exactly one .npy input".to_string());
    }
    let (mut recipe, target) = cnn::classify::model_file_recipe(&m);
    recipe.layer(flags, None)?;
    if recipe.layout == Some(recipe::Layout::Nhwc) {
        return Err(format!(
            "{}: --layout nhwc: a model file's input is channels, height, width",
            model.display()
        ));
    }
    // Only pictures need a target size (an array is the network's input as it is).
    let target = if pictures.is_empty() {
        target
    } else {
        let dims = [target.channels, target.height, target.width].map(Some);
        recipe
            .fit(&dims)
            .map_err(|e| format!("{}: {e}", model.display()))?
    };
    let tensors = arrays
        .iter()
        .map(|a| npy::read_input(a, &m.plan.input_shape()))
        .collect::<Result<Vec<_>, _>>()?;
    let bar = cnn::classify::progress(pictures.len());
    let decoded = cnn::classify::load_pictures(&recipe, &target, &pictures, &bar)?;
    give_weights(&mut m, weights, seed, max_bytes)?;
    let mut outputs = cnn::classify::run_batches(&m, &decoded, &bar)?;
    bar.finish_and_clear();
    let item_shape = m.plan.output_shape().to_vec();
    let k = usize::try_from(top).unwrap_or(usize::MAX);
    let (ranking, apply_softmax) =
        cnn::classify::ranking_for(&recipe, &item_shape, m.plan.ends_in_softmax(), k)
            .map_err(|e| format!("{}: {e}", model.display()))?;
    if apply_softmax {
        outputs.iter_mut().for_each(|v| cnn::classify::softmax(v));
    }
    let mut results = Vec::new();
    // Results in command-line order.
    let (mut next_array, mut next_picture) = (tensors.iter(), outputs.iter());
    for path in &paths {
        let name = path.display().to_string();
        if is_array(&path) {
            let Some(x) = next_array.next() else { break };
            let y = m.forward(x).map_err(|e| e.to_string())?;
            if let Some(out) = save_output {
                npy::write_output(out, &y)?;
            }
            let per = y.len() / y.batch().max(1);
            for (index, values) in y.as_slice().chunks(per.max(1)).enumerate() {
                let mut values = values.to_vec();
                if apply_softmax {
                    cnn::classify::softmax(&mut values);
                }
                results.push(run::result(&name, index, &values, &item_shape, &ranking));
            }
        } else if let Some(values) = next_picture.next() {
            results.push(run::result(&name, 0, values, &item_shape, &ranking));
        }
    }
    Ok(RunJson {
        model: m.name().to_string(),
        preprocessing: (!pictures.is_empty()).then(|| recipe.describe(&target)),
        results,
    })
}

fn main() -> ExitCode {
    // A panic would be an engine bug; even then the user gets one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".to_string());
        eprintln!("cnn: internal error (please report): {msg}");
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                print!("{e}");
                return ExitCode::SUCCESS;
            }
            // clap's message runs until its "Usage:" block; fold it onto one line.
            let rendered = e.to_string();
            let message: Vec<&str> = rendered
                .lines()
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more"))
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
                .collect();
            let message = message.join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            eprintln!("cnn: error: {message} (see cnn --help)");
            return ExitCode::from(2);
        }
    };
    match execute(cli) {
        Ok(text) => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (cnn summary … | head) is not an error worth a message.
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("cnn: error: {message}");
            ExitCode::FAILURE
        }
    }
}
