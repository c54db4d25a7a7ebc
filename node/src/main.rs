//! The `shoal` binary: parse the command line, set up logging, run the node.

use clap::Parser;
use shoal::cli::{AuthCommand, Cli, Command, KeyCommand, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let Cli { command } = Cli::parse();
    match &command {
        Command::Run(args) => init_logging(args.log_format),
        // The demo's nodes log to a file of its own; the terminal is for its live view.
        Command::Demo(_) => {}
        _ => init_logging(LogFormat::Text),
    }
    let result = match command {
        Command::Run(args) => {
            let check_only = args.check_config;
            match args.resolve() {
                Ok(config) if check_only => shoal::server::check(&config)
                    .map(|summary| println!("{summary}"))
                    .map_err(|e| e.to_string()),
                Ok(config) => run(config),
                Err(e) => Err(e.to_string()),
            }
        }
        Command::Key(KeyCommand::Generate { out }) => generate_key(&out),
        Command::Config(args) => client_config(&args),
        Command::Auth(AuthCommand::Htpasswd { user, cost }) => htpasswd(&user, cost),
        Command::Auth(AuthCommand::Token { name, file }) => {
            shoal::auth::add_token(&file, &name).map(|token| println!("{token}"))
        }
        Command::Status(args) => status(&args),
        Command::Export(args) => export(&args),
        Command::Import(args) => import(&args),
        Command::Demo(args) => demo(args),
        Command::Pin(args) => shoal::placement::cli::pin(&args),
        Command::Unpin(args) => shoal::placement::cli::unpin(&args),
        Command::Pins(args) => shoal::placement::cli::pins(&args),
        Command::Warm(args) => shoal::placement::cli::warm(&args),
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

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("SHOAL_LOG")
        .unwrap_or_else(|_| EnvFilter::new(shoal::cli::DEFAULT_LOG_FILTER));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
        }
        LogFormat::Json => logs.json().with_current_span(false).with_span_list(false).init(),
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

fn client_config(args: &shoal::cli::ClientConfigArgs) -> Result<(), String> {
    use shoal::client_config::{self, ClientConfigError, Node, Runtime};
    let node = Node::parse(&args.node).map_err(|e| e.to_string())?;
    let registries = client_config::registries(&args.registries).map_err(|e| e.to_string())?;
    let target = args.out.clone().unwrap_or_else(|| client_config::default_target(args.runtime));
    let existing = match (args.runtime, std::fs::read_to_string(&target)) {
        (Runtime::Docker, Ok(text)) => Some(text),
        (Runtime::Docker, Err(e)) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(ClientConfigError::Read { path: target, source: e }.to_string());
        }
        _ => None,
    };
    let plan = client_config::plan(args.runtime, &node, &registries, &target, existing.as_deref())
        .map_err(|e| e.to_string())?;
    if args.dry_run {
        for file in &plan.files {
            println!("# {}\n{}", file.path.display(), file.text);
        }
    } else {
        client_config::write(&plan).map_err(|e| e.to_string())?;
        for file in &plan.files {
            println!("wrote {}", file.path.display());
        }
    }
    for note in &plan.notes {
        println!("note: {note}");
    }
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

fn status(args: &shoal::cli::StatusArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let report = runtime
        .block_on(shoal::status::fetch(
            &args.node.node,
            args.node.user.as_deref(),
            args.node.node_ca.as_deref(),
        ))
        .map_err(|e| e.to_string())?;
    if args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        print!("{}", shoal::status::render(&report));
    }
    Ok(())
}

fn export(args: &shoal::cli::ExportArgs) -> Result<(), String> {
    use shoal::archive::{ImageRef, NodeClient};
    let images: Vec<ImageRef> = args
        .images
        .iter()
        .map(|i| ImageRef::parse(i))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let node = &args.node;
    let client = NodeClient::new(&node.node, node.user.as_deref(), node.node_ca.as_deref())
        .map_err(|e| e.to_string())?;
    let platform = args.platform.as_deref();
    let exporting =
        shoal::archive::export(&client, &images, &args.out, platform, args.with_referrers);
    let report = current_thread()?.block_on(exporting).map_err(|e| e.to_string())?;
    let referrers = match args.with_referrers {
        true => format!(", {} referrers", report.referrers),
        false => String::new(),
    };
    println!(
        "wrote {}: {} images{referrers}, {} manifests, {} blobs ({})",
        args.out.display(),
        report.images,
        report.manifests,
        report.blobs,
        shoal::store::human_size(report.bytes)
    );
    Ok(())
}

fn import(args: &shoal::cli::ImportArgs) -> Result<(), String> {
    let (report, into) = match &args.data_dir {
        Some(dir) => {
            let report = shoal::archive::import_into(
                &args.archive,
                dir,
                args.config.as_deref(),
                &args.hosted,
            )?;
            (report, dir.display().to_string())
        }
        None => {
            let node = &args.node;
            let client = shoal::archive::NodeClient::new(
                &node.node,
                node.user.as_deref(),
                node.node_ca.as_deref(),
            )
            .map_err(|e| e.to_string())?;
            let report = current_thread()?
                .block_on(shoal::archive::import(&client, &args.archive))
                .map_err(|e| e.to_string())?;
            (report, args.node.node.clone())
        }
    };
    let referrers = match report.referrers {
        0 => String::new(),
        n => format!(" and {n} referrers"),
    };
    println!(
        "imported {} images{referrers} into {}: {} manifests, {} blobs uploaded ({}), {} already there",
        report.images,
        into,
        report.manifests,
        report.blobs_uploaded,
        shoal::store::human_size(report.bytes_uploaded),
        report.blobs_present
    );
    Ok(())
}

fn current_thread() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn demo(args: shoal::cli::DemoArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime
        .block_on(shoal::demo::run(args, shoal::server::shutdown_signal()))
        .map_err(|e| e.to_string())
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
