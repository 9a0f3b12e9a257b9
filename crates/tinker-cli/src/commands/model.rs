//! `tinker model list`.

use tinker_types::SupportedModel;

use crate::connect;
use crate::error::CliError;
use crate::output::{self, Format, Render};

/// `tinker model …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Cmd {
    /// List the models your organization can use (pass a name as `base_model`).
    List {
        /// Keep only models whose name contains this (case-insensitive).
        substring: Option<String>,
    },
}

struct ModelList(Vec<SupportedModel>);

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "N/A".to_owned(), |v| v.to_string())
}

impl Render for ModelList {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({ "models": output::value(&self.0) })
    }
    fn columns(&self) -> Vec<String> {
        ["Model", "Max Context", "Trainable", "Sampleable"]
            .map(String::from)
            .to_vec()
    }
    fn rows(&self) -> Vec<Vec<String>> {
        self.0
            .iter()
            .map(|m| {
                vec![
                    opt(m.model_name.clone()),
                    opt(m.max_context_length),
                    opt(m.trainable.map(output::yes_no)),
                    opt(m.sampleable.map(output::yes_no)),
                ]
            })
            .collect()
    }
}

/// Runs `tinker model …`.
pub(crate) async fn run(cmd: Cmd, format: Format) -> Result<(), CliError> {
    let Cmd::List { substring } = cmd;
    let client = connect::rest().await?;
    let mut models = client.get_server_capabilities().await?.supported_models;
    if let Some(sub) = &substring {
        let needle = sub.to_lowercase();
        models.retain(|m| {
            m.model_name
                .as_ref()
                .is_some_and(|n| n.to_lowercase().contains(&needle))
        });
        if models.is_empty() {
            // The org is only named when the credential says it (JWT auth).
            let org = client
                .whoami()
                .await
                .map(|w| format!(" for organization {}", w.org_urn))
                .unwrap_or_default();
            return Err(CliError::with(
                format!("No model name contains '{sub}'{org}"),
                "Run 'tinker model list' to see every model this organization can use.",
            ));
        }
    }
    output::print(&ModelList(models), format)
}
