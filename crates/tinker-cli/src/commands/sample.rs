//! `tinker sample`: sample continuations of a prompt from a base model or saved sampler
//! weights.
//!
//! Not a command of the SDK 0.38 CLI: it is the sampling command of tinkex's CLI (its
//! `run`, a name the SDK's CLI gives to training runs), kept here with tinkex's options.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use tinker_client::{CloseStatus, SamplingSource, ServiceClient};
use tinker_types::{ModelInput, SampleResponse, SamplingParams};

use crate::error::CliError;
use crate::output::Format;

/// `tinker sample …`
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The base model to sample from (see `tinker model list`).
    #[arg(
        long,
        required_unless_present = "model_path",
        conflicts_with = "model_path"
    )]
    base_model: Option<String>,
    /// Sampler weights to sample from (`tinker://…/sampler_weights/…`).
    #[arg(long)]
    model_path: Option<String>,
    /// The prompt text.
    #[arg(
        long,
        required_unless_present = "prompt_file",
        conflicts_with = "prompt_file"
    )]
    prompt: Option<String>,
    /// A file holding the prompt: token ids as a JSON array or `{"tokens": [...]}`,
    /// otherwise text.
    #[arg(long)]
    prompt_file: Option<PathBuf>,
    /// Most tokens per sample (default: the server's).
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Sampling temperature.
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Top-k cutoff (-1: none).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    top_k: i64,
    /// Nucleus cutoff.
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Number of samples.
    #[arg(long, default_value_t = 1)]
    num_samples: u32,
    /// Random seed, for reproducible samples.
    #[arg(long)]
    seed: Option<u64>,
    /// Write the result to this file instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
}

/// Largest prompt file read (a prompt far past any model's context is a mistake).
const MAX_PROMPT_FILE: u64 = 16 << 20;

/// The prompt as the user gave it.
#[derive(Debug, PartialEq)]
enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
}

/// Reads `--prompt` or `--prompt-file`: a JSON integer array or `{"tokens": [...]}` is
/// token ids, anything else is text.
fn read_prompt(args: &Args) -> Result<Prompt, CliError> {
    let prompt = match (&args.prompt, &args.prompt_file) {
        (Some(text), _) => Prompt::Text(text.clone()),
        (None, Some(path)) => parse_prompt_file(&read_bounded(path)?)?,
        (None, None) => return Err(CliError::new("Give --prompt or --prompt-file")),
    };
    let empty = match &prompt {
        Prompt::Text(t) => t.is_empty(),
        Prompt::Tokens(t) => t.is_empty(),
    };
    if empty {
        return Err(CliError::new("The prompt is empty"));
    }
    Ok(prompt)
}

fn read_bounded(path: &Path) -> Result<String, CliError> {
    let what = || format!("reading the prompt file {}", path.display());
    let len = std::fs::metadata(path)
        .map_err(|e| CliError::io(&what(), &e))?
        .len();
    if len > MAX_PROMPT_FILE {
        return Err(CliError::with(
            format!("The prompt file {} is too large", path.display()),
            format!("It has {len} bytes; the limit is {MAX_PROMPT_FILE}."),
        ));
    }
    std::fs::read_to_string(path).map_err(|e| CliError::io(&what(), &e))
}

fn parse_prompt_file(content: &str) -> Result<Prompt, CliError> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum TokenFile {
        List(Vec<serde_json::Value>),
        Object { tokens: Vec<serde_json::Value> },
    }
    let Ok(file) = serde_json::from_str::<TokenFile>(content) else {
        return Ok(Prompt::Text(content.to_owned()));
    };
    let (TokenFile::List(values) | TokenFile::Object { tokens: values }) = file;
    values
        .iter()
        .map(|v| {
            v.as_u64()
                .and_then(|t| u32::try_from(t).ok())
                .ok_or_else(|| {
                    CliError::with(
                        "The prompt file holds a bad token id",
                        format!("{v} is not a token id (an integer in 0..2^32)."),
                    )
                })
        })
        .collect::<Result<_, _>>()
        .map(Prompt::Tokens)
}

/// Runs `tinker sample …`.
pub(crate) async fn run(args: Args, format: Format) -> Result<(), CliError> {
    let prompt = read_prompt(&args)?;
    if args.num_samples == 0 {
        return Err(CliError::new("--num-samples must be at least 1"));
    }
    let params = SamplingParams {
        max_tokens: args.max_tokens,
        seed: args.seed,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        ..SamplingParams::default()
    };
    check_params(&params)?;
    let source = match (args.base_model.clone(), args.model_path.clone()) {
        (_, Some(path)) => SamplingSource::ModelPath(path),
        (Some(model), None) => SamplingSource::BaseModel(model),
        (None, None) => return Err(CliError::new("Give --base-model or --model-path")),
    };

    let service = ServiceClient::builder().build().await?;
    let outcome = sample(&service, source, prompt, params, &args, format).await;
    let status = if outcome.is_ok() {
        CloseStatus::Success
    } else {
        CloseStatus::Errored
    };
    service.close(status, None).await?;
    outcome
}

async fn sample(
    service: &ServiceClient,
    source: SamplingSource,
    prompt: Prompt,
    params: SamplingParams,
    args: &Args,
    format: Format,
) -> Result<(), CliError> {
    let sampler = service.create_sampling_client(source).await?;
    // A text prompt needs the tokenizer; token prompts only use it to show text.
    let tokenizer = match &prompt {
        Prompt::Text(_) => Some(sampler.get_tokenizer().await?),
        Prompt::Tokens(_) if format == Format::Table => sampler.get_tokenizer().await.ok(),
        Prompt::Tokens(_) => None,
    };
    let tokens = match (&prompt, &tokenizer) {
        (Prompt::Tokens(t), _) => t.clone(),
        (Prompt::Text(text), Some(tok)) => tok
            .encode(text, true)
            .map_err(|e| CliError::with("Could not tokenize the prompt", e.to_string()))?,
        (Prompt::Text(_), None) => return Err(CliError::new("No tokenizer for the prompt")),
    };
    if format == Format::Table && args.output.is_none() {
        eprintln!("Starting sampling...");
    }
    let response = sampler
        .sample(ModelInput::from_tokens(&tokens), args.num_samples, params)
        .await?;
    let text = match format {
        Format::Json => serde_json::to_string(&response)
            .map_err(|e| CliError::with("Could not encode the result", e.to_string()))?,
        Format::Table => render_text(&response, |ids| {
            tokenizer.as_ref().map_or_else(
                || format!("[tokens {ids:?}]"),
                |tok| {
                    tok.decode(ids, true)
                        .unwrap_or_else(|e| format!("[decode failed: {e}]"))
                },
            )
        }),
    };
    match &args.output {
        Some(path) => {
            write_output(path, &text)?;
            println!("Output written to {}", path.display());
            Ok(())
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{text}").map_err(|e| CliError::io("writing the output", &e))
        }
    }
}

/// The options the server would refuse, refused before anything is sent.
fn check_params(p: &SamplingParams) -> Result<(), CliError> {
    let bad = |what: String| Err(CliError::with("Invalid sampling options", what));
    if p.max_tokens == Some(0) {
        return bad("--max-tokens must be at least 1".to_owned());
    }
    if !p.temperature.is_finite() || p.temperature < 0.0 {
        return bad(format!("--temperature must be >= 0, got {}", p.temperature));
    }
    if !(p.top_p > 0.0 && p.top_p <= 1.0) {
        return bad(format!("--top-p must be in (0, 1], got {}", p.top_p));
    }
    if p.top_k == 0 || p.top_k < -1 {
        return bad(format!("--top-k must be -1 or at least 1, got {}", p.top_k));
    }
    Ok(())
}

/// tinkex's text form: per sample its text, stop reason and mean logprob.
fn render_text(response: &SampleResponse, decode: impl Fn(&[u32]) -> String) -> String {
    let mut out = String::new();
    for (i, seq) in response.sequences.iter().enumerate() {
        let avg = seq
            .logprobs
            .as_deref()
            .filter(|lps| !lps.is_empty())
            .map_or_else(
                || "n/a".to_owned(),
                |lps| {
                    let sum: f64 = lps.iter().map(|&l| f64::from(l)).sum();
                    format!("{:.2}", sum / lps.len() as f64)
                },
            );
        out.push_str(&format!(
            "Sample {}:\n{}\nstop_reason={} | avg_logprob={avg}\n",
            i + 1,
            decode(&seq.tokens),
            seq.stop_reason
        ));
    }
    out.push_str(&format!(
        "Sampling complete ({} sequences)",
        response.sequences.len()
    ));
    out
}

/// Writes the result whole: to a temporary file beside `path`, then renamed over it.
fn write_output(path: &Path, text: &str) -> Result<(), CliError> {
    let what = || format!("writing {}", path.display());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| CliError::io(&what(), &e))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.write_all(b"\n"))
        .map_err(|e| CliError::io(&what(), &e))?;
    tmp.persist(path)
        .map_err(|e| CliError::io(&what(), &e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_files_hold_token_ids_or_text() {
        assert_eq!(
            parse_prompt_file("[1, 2, 3]").unwrap(),
            Prompt::Tokens(vec![1, 2, 3])
        );
        assert_eq!(
            parse_prompt_file(r#"{"tokens": [7]}"#).unwrap(),
            Prompt::Tokens(vec![7])
        );
        assert_eq!(
            parse_prompt_file("Hello [1]\n").unwrap(),
            Prompt::Text("Hello [1]\n".to_owned())
        );
        assert!(parse_prompt_file("[1, -2]").is_err());
        assert!(parse_prompt_file("[4294967296]").is_err());
    }
}
