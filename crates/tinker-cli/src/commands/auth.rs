//! `tinker auth login|logout|status|whoami`: the credentials file the transport reads.

use http::{HeaderName, HeaderValue};
use secrecy::{ExposeSecret as _, SecretString};
use tinker_transport::auth::CredentialsFile;
use tinker_transport::{Credential, Env, RequestSpec, Transport};
use tinker_types::SelfApiKeyResponse;

use crate::connect;
use crate::error::CliError;
use crate::output::{self, Format, Properties};

/// `tinker auth …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Cmd {
    /// Store an API key as the default credential (prompted, masked, validated first).
    Login,
    /// Remove the stored default credential.
    Logout,
    /// Check local credential availability and live access to Tinker.
    Status,
    /// Show the user and organization of the active credential.
    Whoami,
}

const CONSOLE: &str = "https://tinker.thinkingmachines.ai";
const APIKEY_ME: &str = "/api/v1/auth/apikey/me";
/// The SDK's timeout for the key endpoints.
const KEY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn store() -> Result<CredentialsFile, CliError> {
    let env = Env::process();
    let path = CredentialsFile::default_path(&env).ok_or_else(|| {
        CliError::with(
            "No home directory",
            "Set HOME so the credentials file can be found.",
        )
    })?;
    Ok(CredentialsFile::new(path))
}

/// A request on the key endpoints, authenticated by `key` itself (not the stored default).
async fn key_request(
    spec: RequestSpec,
    key: &SecretString,
) -> Result<tinker_transport::Response, CliError> {
    let transport = Transport::builder()
        .no_credential()
        .max_retries(0)
        .build()?;
    let mut value = HeaderValue::from_str(key.expose_secret())
        .map_err(|_| CliError::new("The API key contains characters a header cannot carry"))?;
    value.set_sensitive(true);
    Ok(transport
        .send(
            spec.without_auth()
                .with_timeout(KEY_TIMEOUT)
                .with_header(HeaderName::from_static("x-api-key"), value),
        )
        .await?)
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Reads the key: masked on a terminal, a plain line otherwise (scripts, tests).
fn read_key() -> Result<SecretString, CliError> {
    use std::io::IsTerminal as _;
    let key = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("API key: ").map_err(|e| CliError::io("reading the key", &e))?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| CliError::io("reading the key", &e))?;
        line
    };
    Ok(SecretString::from(key.trim().to_owned()))
}

async fn login() -> Result<(), CliError> {
    let store = store()?;
    if store.default_key()?.is_some() {
        return Err(CliError::with(
            "Already logged in",
            "Run 'tinker auth logout' before logging in again.",
        ));
    }
    println!(
        "Create an API Key: {CONSOLE}/keys?new_key=true&key_name=tinker-cli-{}",
        hostname()
    );
    println!();
    let key = read_key()?;
    if key.expose_secret().is_empty() {
        return Err(CliError::new("The API key must not be empty"));
    }
    let info: SelfApiKeyResponse = key_request(RequestSpec::get(APIKEY_ME), &key)
        .await
        .and_then(|r| r.json().map_err(CliError::from))
        .map_err(|e| CliError {
            message: "Could not validate the API key".into(),
            details: e.details.or(Some(e.message)),
        })?;
    store.add_key(&info.key_id.to_string(), &key, &info.name, true)?;
    println!(
        "Logged in as {} ({}). Stored API key '{}' as the default credential.",
        info.details.user_details.email, info.details.org_details.name, info.name
    );
    Ok(())
}

async fn logout() -> Result<(), CliError> {
    let store = store()?;
    let Some(record) = store.default_key()? else {
        return Err(CliError::with(
            "No default credential is stored",
            "There is nothing to log out from. Run 'tinker auth login' to log in.",
        ));
    };
    // Only keys the CLI generated are revoked; a key made in the console stays active.
    let revoke = record.kind == "generated";
    let revoke_error = if revoke {
        key_request(RequestSpec::delete(APIKEY_ME), &record.key)
            .await
            .err()
    } else {
        None
    };
    store.delete_key(&record.id)?;
    let console = format!("Delete api key here: {CONSOLE}/keys/{}", record.id);
    if let Some(e) = revoke_error {
        return Err(CliError::with(
            "Could not delete the API key on the server",
            format!(
                "Removed the local credential.\nAPI key name: {}\nAPI key ID: {}\n{console}\n{}",
                record.name,
                record.id,
                e.details.unwrap_or(e.message)
            ),
        ));
    }
    if revoke {
        println!(
            "Removed credential '{}' and deleted its API key on the server.",
            record.name
        );
    } else {
        println!(
            "Removed credential '{}'. The API key is still active.",
            record.name
        );
        println!("{console}");
    }
    Ok(())
}

async fn status() -> Result<(), CliError> {
    let has = Credential::resolve(None, &Env::process()).is_ok();
    println!("Credentials available: {}", if has { "yes" } else { "no" });
    if !has {
        return Err(CliError::with(
            "No Tinker credentials are available",
            "Run 'tinker auth login' or configure a Tinker credential.",
        ));
    }
    let probe = async {
        let transport = Transport::builder().max_retries(0).build()?;
        transport
            .send(RequestSpec::get("/api/v1/get_server_capabilities").with_max_retries(0))
            .await
            .map_err(CliError::from)
    };
    match probe.await {
        Ok(_) => {
            println!("Tinker accessible: yes");
            Ok(())
        }
        Err(e) => {
            println!("Tinker accessible: no");
            Err(e)
        }
    }
}

/// Runs `tinker auth …`.
pub(crate) async fn run(cmd: Cmd, format: Format) -> Result<(), CliError> {
    match cmd {
        Cmd::Login => login().await,
        Cmd::Logout => logout().await,
        Cmd::Status => status().await,
        Cmd::Whoami => {
            let who = connect::rest().await?.whoami().await?;
            let rows = vec![
                (
                    "Email".into(),
                    who.email.clone().unwrap_or_else(|| "N/A".into()),
                ),
                ("User".into(), who.user_urn.clone()),
                ("Organization".into(), who.org_urn.clone()),
            ];
            output::print(
                &Properties {
                    title: None,
                    rows,
                    json: output::value(&who),
                },
                format,
            )
        }
    }
}
