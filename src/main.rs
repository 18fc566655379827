use clap::Parser;

use keygate::cli::{self, AppArgs, Commands, TokenArgs};
use keygate::config::{
    ApiSpecCommand, AppCommand, Cli, Command, Config, KeysCommand, LogsCommand, RemindersCommand, TokenCommand,
    UserCommand,
};
use keygate::startup::Application;

/// jemalloc instead of glibc's allocator. The gate's requests finish in
/// bursts (a group commit lets ~50 answer at once) and their audit rows'
/// strings are freed on the writer's thread: glibc's per-thread cache (7
/// chunks a size) overflowed, and a token request made ~6 allocations
/// through `_int_malloc` and ~25 frees through `_int_free` (callgrind, per
/// request on the HTTP worker). With jemalloc, in alternating runs, the
/// token call's CPU went 16.3–16.7 → 15.6–16.2 µs (`/healthz` unchanged),
/// and the bench's peak RSS through the argon2 flood 122–139 → 128–148 MiB.
/// mimalloc had been tried before and dropped: 427 MiB through that flood.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let args = Cli::parse();
    keygate::telemetry::init("info,actix_server=warn", args.log_format);
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Cli) -> anyhow::Result<()> {
    let url = args.database_url;
    let api_spec = args.api_spec;
    let commands = |url: &keygate::db::DatabaseUrl| -> anyhow::Result<Commands> {
        Commands::new(cli::open(url)?, url).with_api_spec(api_spec.as_deref())
    };
    match args.command {
        Command::Serve(serve) => {
            let config = Config::new(url, api_spec.clone(), *serve)?;
            actix_web::rt::System::new().block_on(async move {
                let app = Application::build(config.clone()).await?;
                tracing::info!("keygate listening on http://{}:{}", config.bind.ip(), app.port());
                if let (Some(address), Some(port)) = (config.metrics_bind, app.metrics_port()) {
                    tracing::info!("metrics on http://{}:{port}/metrics", address.ip());
                }
                app.run_until_stopped().await?;
                Ok(())
            })
        }
        Command::Migrate => {
            cli::open(&url)?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::User(UserCommand::Create { email, role, sample_data }) => {
            let password = cli::read_password()?;
            let account = cli::create_user(&mut *cli::open(&url)?.get()?, &email, &role, password, sample_data)?;
            eprintln!("created {} account {}", account.role, account.email);
            Ok(())
        }
        Command::User(UserCommand::Suspend { email }) => {
            let commands = commands(&url)?;
            eprintln!("{}", runtime()?.block_on(commands.set_account_suspended(&email, true))?);
            Ok(())
        }
        Command::User(UserCommand::Reinstate { email }) => {
            let commands = commands(&url)?;
            eprintln!("{}", runtime()?.block_on(commands.set_account_suspended(&email, false))?);
            Ok(())
        }
        Command::Token(TokenCommand::Create { email, name, kind, scopes, expires_in, description, allow_ips }) => {
            let commands = commands(&url)?;
            let args = TokenArgs {
                email: &email,
                name: &name,
                kind: &kind,
                scopes: &scopes,
                expires_in: expires_in.as_deref(),
                description: &description,
                allowed_ips: &allow_ips,
            };
            let token = runtime()?.block_on(commands.create_token(args))?;
            println!("{token}");
            Ok(())
        }
        Command::Token(TokenCommand::Revoke { token_id }) => {
            let commands = commands(&url)?;
            eprintln!("{}", runtime()?.block_on(commands.revoke_token(&token_id))?);
            Ok(())
        }
        Command::Token(TokenCommand::AllowIp { token_id, cidrs }) => {
            let commands = commands(&url)?;
            eprintln!("{}", runtime()?.block_on(commands.set_allowed_ips(&token_id, &cidrs))?);
            Ok(())
        }
        Command::App(AppCommand::Create {
            email,
            name,
            redirect_uris,
            redirect_prefixes,
            scopes,
            public,
            homepage,
            device_flow,
        }) => {
            let commands = commands(&url)?;
            let args = AppArgs {
                email: &email,
                name: &name,
                homepage: &homepage,
                redirect_uris: &redirect_uris,
                redirect_prefixes: &redirect_prefixes,
                scopes: &scopes,
                public,
            };
            println!("{}", runtime()?.block_on(commands.create_app_with_device_flow(args, device_flow))?);
            Ok(())
        }
        Command::App(AppCommand::Delete { client_id }) => {
            let commands = commands(&url)?;
            eprintln!("{}", runtime()?.block_on(commands.delete_app(&client_id))?);
            Ok(())
        }
        Command::Reminders(RemindersCommand::Send { mail, public_url }) => {
            let commands = commands(&url)?;
            eprintln!("{}", runtime()?.block_on(commands.send_reminders(mail.settings(), &public_url))?);
            Ok(())
        }
        Command::ApiSpec(ApiSpecCommand::Check { file }) => {
            match keygate::apispec::load(&file, keygate::gateway::RESERVED) {
                Ok(spec) => {
                    print!("{}", spec.describe());
                    Ok(())
                }
                Err(e) => {
                    eprintln!("{}: {e}", file.display());
                    std::process::exit(1);
                }
            }
        }
        Command::Keys(KeysCommand::Rotate { secrets }) => {
            let rotated = cli::rotate_keys(&mut *cli::open(&url)?.get()?, secrets.key()?.as_ref())?;
            println!("{}", rotated.kid);
            eprintln!("{}", rotated.said);
            Ok(())
        }
        Command::Logs(LogsCommand::Prune { retention_days }) => {
            let pruned = cli::prune_logs(&mut *cli::open(&url)?.get()?, retention_days)?;
            eprintln!("pruned {pruned} audit rows older than {retention_days} days");
            Ok(())
        }
    }
}

/// A runtime for the commands that run the async services.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}
