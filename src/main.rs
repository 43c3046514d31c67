//! The `cnn` command line: `summary`, `explain`, `compare`, `run`, and a demo when called
//! without arguments. Every failure is one line on stderr and exit status 1 (2 for usage
//! errors); nothing a user types or feeds makes it panic.

use clap::{Parser, Subcommand, ValueEnum};
use cnn::model::format::parse_bytes;
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
    /// Per layer: output shape, parameters, the formula behind them, MACs; then totals
    Summary {
        /// Model file (.toml)
        model: PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        format: SummaryFormat,
        /// Count only: do not allocate weights
        #[arg(long)]
        no_alloc: bool,
    },
    /// Per conv-like layer: the im2col matrix, the GEMM's M x K x N, the column-buffer bytes
    Explain {
        /// Model file (.toml)
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
    /// A forward pass on a float32 .npy array (CHW or NCHW) with seeded random weights
    Run {
        /// Model file (.toml)
        model: PathBuf,
        /// Input array (.npy, float32, CxHxW or NxCxHxW)
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
        /// Write the output array here (.npy, float32, batch first)
        #[arg(long, value_name = "FILE")]
        save_output: Option<PathBuf>,
        /// How many classes to list per item
        #[arg(long, value_name = "K", default_value_t = 5,
              value_parser = clap::value_parser!(u64).range(1..))]
        top: u64,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

fn plan(path: &Path) -> Result<Model, String> {
    Model::plan_file(path).map_err(|e| e.to_string())
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, String> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| format!("cannot encode JSON: {e}"))
}

fn execute(cli: Cli) -> Result<String, String> {
    let max_bytes = cli.max_weight_bytes;
    let Some(command) = cli.command else {
        return cnn::demo::run(cli.seed, max_bytes);
    };
    match command {
        Command::Summary {
            model,
            format,
            no_alloc,
        } => {
            let mut m = plan(&model)?;
            let alloc = if no_alloc {
                summary::Allocation::Skipped
            } else if m.plan.weight_bytes() > max_bytes {
                summary::Allocation::OverCeiling {
                    bytes: m.plan.weight_bytes(),
                    ceiling: max_bytes,
                }
            } else {
                m.allocate(cli.seed, max_bytes).map_err(|e| e.to_string())?;
                summary::Allocation::Held(m.allocated_params().unwrap_or(0))
            };
            Ok(match format {
                SummaryFormat::Table => summary::render_table(&m.plan, alloc),
                SummaryFormat::Markdown => summary::render_markdown(&m.plan, alloc),
                SummaryFormat::Json => to_json(&summary::to_json(&m.plan, alloc))?,
            })
        }
        Command::Explain { model, format } => {
            let m = plan(&model)?;
            let items = cnn::model::explain(&m.plan);
            Ok(match format {
                Format::Table => explain::render(&m.plan, &items),
                Format::Json => to_json(&explain::to_json(&m.plan, &items))?,
            })
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
            input,
            save_output,
            top,
            format,
        } => {
            let mut m = plan(&model)?;
            let x = npy::read_input(&input, &m.plan.input_shape())?;
            m.allocate(cli.seed, max_bytes).map_err(|e| e.to_string())?;
            let y = m.forward(&x).map_err(|e| e.to_string())?;
            if let Some(path) = &save_output {
                npy::write_output(path, &y)?;
            }
            let name = input.display().to_string();
            let top = usize::try_from(top).unwrap_or(usize::MAX);
            let probabilities = m.plan.ends_in_softmax();
            let results = run::results(m.name(), &name, &y, top, probabilities);
            Ok(match format {
                Format::Table => run::render(&results, top),
                Format::Json => to_json(&results)?,
            })
        }
    }
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
