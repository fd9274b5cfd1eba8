//! The `villagehub` command: serve (the default), or one of the
//! administrative subcommands.

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use villagehub::config::ServeArgs;
use villagehub::seed::BenchSeedArgs;
use villagehub::server::{serve, shutdown_signal, Node};

/// How long a command waits to catch up with Redis (cluster mode).
const CATCH_UP: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Parser)]
#[command(
    name = "villagehub",
    version,
    about = "Real-time community governance: every village a live group chat"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Copy the store to FILE while the server keeps running (SQLite's
    /// online backup), and the pictures to FILE.images/. The token key is
    /// not included.
    Backup {
        /// Data directory of the node to back up.
        #[arg(long, env = "VILLAGEHUB_DATA_DIR", default_value = "data")]
        data_dir: std::path::PathBuf,
        /// The backup file to write (must not exist).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Replace a stopped node's store with a backup (and copy in the
    /// pictures of FILE.images/ it lacks); on start the node catches up
    /// whatever the backup lacks (from Redis in cluster mode).
    Restore {
        #[arg(long, env = "VILLAGEHUB_DATA_DIR", default_value = "data")]
        data_dir: std::path::PathBuf,
        /// The backup file to restore.
        #[arg(long)]
        from: std::path::PathBuf,
    },
    /// Create synthetic groups and members for the bench and write their
    /// tokens. Run it on a data directory while no server uses it.
    BenchSeed {
        #[command(flatten)]
        serve: ServeArgs,
        #[command(flatten)]
        seed: BenchSeedArgs,
    },
    /// Administer the data directory: org tree, accounts, passwords. Refuses
    /// to run while a server holds the directory. Flags such as
    /// `--data-dir` go before the subcommand.
    Admin {
        #[command(flatten)]
        serve: ServeArgs,
        #[command(subcommand)]
        command: villagehub::admin::AdminCommand,
    },
    /// Affairs disclosures (村务公开).
    Disclosures {
        #[command(subcommand)]
        command: DisclosuresCommand,
    },
}

#[derive(Subcommand)]
enum DisclosuresCommand {
    /// Verify a group's disclosure hash chain; prints the report as JSON
    /// and exits with status 1 if a link is broken.
    Verify {
        #[arg(long, env = "VILLAGEHUB_DATA_DIR", default_value = "data")]
        data_dir: std::path::PathBuf,
        #[arg(long)]
        group: u64,
    },
}

fn main() -> anyhow::Result<()> {
    limit_malloc_retention();
    let filter = tracing_subscriber::EnvFilter::try_from_env("VILLAGEHUB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The WebSocket and HTTP libraries trace whole frames and headers, and
    // those carry tokens: they never log below info, whatever the setting.
    let filter =
        ["tungstenite=info", "tokio_tungstenite=info", "hyper=info", "hyper_util=info", "redis=info"]
            .into_iter()
            .fold(filter, |f, d| f.add_directive(d.parse().expect("valid directive")));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            None => run_server(cli.serve).await,
            Some(Command::Serve(args)) => run_server(args).await,
            Some(Command::Backup { data_dir, out }) => {
                let heads = villagehub::backup::backup(&data_dir, &out)?;
                println!("backed up {} to {}: {}", data_dir.display(), out.display(), describe(&heads));
                Ok(())
            }
            Some(Command::Restore { data_dir, from }) => {
                let heads = villagehub::backup::restore(&data_dir, &from)?;
                println!("restored {} into {}: {}", from.display(), data_dir.display(), describe(&heads));
                Ok(())
            }
            Some(Command::BenchSeed { serve, seed }) => {
                let node = Node::open(serve.resolve()?)?;
                anyhow::ensure!(node.wait_live(CATCH_UP).await, "not caught up with Redis; is it running?");
                let result = villagehub::seed::seed(&node.hub, &seed).await;
                node.close().await;
                result?;
                println!(
                    "seeded {} groups × {} members into {}",
                    seed.groups,
                    seed.members,
                    seed.tokens_out.display()
                );
                Ok(())
            }
            Some(Command::Admin { serve, command }) => {
                let node = Node::open(serve.resolve()?)?;
                anyhow::ensure!(node.wait_live(CATCH_UP).await, "not caught up with Redis; is it running?");
                let result = villagehub::admin::run(&node.hub, command).await;
                node.close().await;
                print!("{}", result?);
                Ok(())
            }
            Some(Command::Disclosures { command: DisclosuresCommand::Verify { data_dir, group } }) => {
                let store = villagehub::store::Store::open(&data_dir)?;
                let report = store.read(|c| villagehub::governance::notices::verify(c, group))?;
                println!("{}", serde_json::to_string(&report)?);
                if !report.ok {
                    std::process::exit(1);
                }
                Ok(())
            }
        }
    })
}

/// "log 0 up to seq 48, log 4 up to seq 153, …" for the operator.
fn describe(heads: &[(u64, u64)]) -> String {
    let logs: Vec<String> = heads.iter().map(|(log, seq)| format!("log {log} up to seq {seq}")).collect();
    format!("{} logs ({})", heads.len(), logs.join(", "))
}

async fn run_server(args: ServeArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.warning_lexicon {
        let n = villagehub::warnings::load_lexicon(path)
            .map_err(|e| anyhow::anyhow!("cannot read the warning lexicon {}: {e}", path.display()))?;
        tracing::info!(keywords = n, "warning lexicon loaded");
    }
    let config = args.resolve()?;
    villagehub::warnings::configure(config.warnings.clone());
    let listen = config.listen;
    let demo = config.demo;
    let node = Node::open(config)?;
    if !node.wait_live(CATCH_UP).await {
        tracing::warn!("not caught up with Redis yet; serving from the local store meanwhile");
    }
    if demo {
        let logins = villagehub::demo::create(&node.hub).await?;
        println!("{logins}");
    }
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let stop = shutdown_signal();
    tracing::info!(%addr, data_dir = %node.hub.config.data_dir.display(), "serving");
    // Tests and scripts wait for this exact line.
    println!("villagehub listening on http://{addr}");
    serve(node, listener, stop).await
}

/// Each argon2 hash allocates ~19 MiB. glibc raises its mmap threshold after
/// the first such block is freed, after which these blocks come from
/// per-thread arenas and are never returned: a few logins on a few blocking
/// threads left 500 MB resident. A fixed threshold keeps big blocks mmapped,
/// so they go back to the system when freed.
fn limit_malloc_retention() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only tunes the allocator; called before any thread
    // exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}
