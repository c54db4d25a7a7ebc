//! The `shoal` binary: parse the command line, set up logging, run the node.

use clap::Parser;
use shoal::cli::{AuthCommand, Cli, Command, KeyCommand};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    // libp2p's Kademlia warns on every bootstrap attempt of a node that is alone; that is the
    // normal state of a first node, not something an operator should act on.
    let default_filter = "info,libp2p_kad=error";
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("SHOAL_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();

    let Cli { command } = Cli::parse();
    let result = match command {
        Command::Run(args) => match args.resolve() {
            Ok(config) => run(config),
            Err(e) => Err(e.to_string()),
        },
        Command::Key(KeyCommand::Generate { out }) => generate_key(&out),
        Command::Auth(AuthCommand::Htpasswd { user, cost }) => htpasswd(&user, cost),
        Command::Auth(AuthCommand::Token { name, file }) => {
            shoal::auth::add_token(&file, &name).map(|token| println!("{token}"))
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("shoal: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn generate_key(out: &std::path::Path) -> Result<(), String> {
    if out.exists() {
        return Err(format!("{} exists; remove it first or choose another --out", out.display()));
    }
    shoal::p2p::ClusterKey::generate()
        .save(out)
        .map_err(|e| format!("cannot write the cluster key to {}: {e}", out.display()))?;
    println!(
        "wrote a new cluster key to {}; copy it to every node and pass --cluster-key",
        out.display()
    );
    Ok(())
}

/// Reads the password's first line from standard input, so that it stays out of the shell's
/// history and the process list.
fn htpasswd(user: &str, cost: u32) -> Result<(), String> {
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err("the password on standard input is empty".to_owned());
    }
    println!("{}", shoal::auth::htpasswd_line(user, password, cost)?);
    Ok(())
}

fn run(config: shoal::config::Config) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        shoal::server::run(config, listener, shoal::server::shutdown_signal())
            .await
            .map_err(|e| e.to_string())
    })
}
