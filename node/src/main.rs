//! `caucus`: the node CLI.

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "caucus", about = "caucus node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Benchmarks (see TARGETS.md).
    #[command(subcommand)]
    Bench(caucus_node::bench::BenchCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(cmd) => {
            caucus_node::bench::run(cmd)?;
        }
    }
    Ok(())
}
