//! rumqttd's broker, started from a TOML file the way its own binary does,
//! so bench/compare.sh can measure it without the binary's stale lockfile.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "rumqttd",
    version,
    about = "rumqttd broker for bench/compare.sh"
)]
struct Cli {
    /// TOML config (rumqttd's format: [router], [v4.N], [v5.N], ...)
    #[arg(short, long)]
    config: String,
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter("rumqttd=warn")
        .with_ansi(false)
        .try_init()?;
    // config-rs, not a plain TOML parser: rumqttd's Config relies on its
    // key handling, and its binary reads files through it too.
    let config: rumqttd::Config = config::Config::builder()
        .add_source(config::File::new(&cli.config, config::FileFormat::Toml))
        .build()?
        .try_deserialize()?;
    rumqttd::Broker::new(config).start()?;
    Ok(())
}
