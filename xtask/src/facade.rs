//! `cargo xtask facade-check`: every type a public signature of `tinker-client` reaches
//! (through its functions, methods, fields and variants, and on into the `tinker-types`
//! types those name) is exported at the root of the `tinker` facade (or, for a module of
//! the client that the facade re-exports whole, such as `regularizers`, under it), and the
//! facade exports no module of `tinker-client` that is not meant for users.
//!
//! It reads rustdoc's JSON output (`--output-format json`, unstable, enabled on the stable
//! toolchain with `RUSTC_BOOTSTRAP=1`). The walk is deliberately format-tolerant: any JSON
//! object with an `id` and `args` is a path to an item, so small changes of the format
//! between toolchains do not break it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::workspace_root;

/// The crates whose types must be at the facade root.
const OUR_CRATES: [&str; 2] = ["tinker_client", "tinker_types"];

/// Types reachable from a signature that are deliberately not at the root, with why.
const NOT_AT_ROOT: &[(&str, &str)] = &[
    // The client's `Error`/`Result` are the root's; the wire crate's own error is only
    // returned by `tinker_types` constructors, under `tinker::types::Error`.
    ("tinker_types::Error", "the root's Error is the client's"),
    ("tinker_types::Result", "the root's Result is the client's"),
];

/// `tinker-client` modules the facade may re-export whole (the others are internal).
const PUBLIC_MODULES: &[&str] = &[
    "console",
    "custom_loss",
    "data",
    "observe",
    "recovery",
    "regularizers",
];

pub(crate) fn run() -> Result<(), String> {
    let root = workspace_root();
    let client = rustdoc_json(&root, "tinker-client", "tinker_client")?;
    let types = rustdoc_json(&root, "tinker-types", "tinker_types")?;
    let facade = rustdoc_json(&root, "tinker", "tinker")?;
    let required = reachable_types(&client, &types)?;
    let exported = root_exports(&facade)?;
    let mut missing = Vec::new();
    for (krate, path) in &required {
        let Some(name) = path.last() else { continue };
        let key = format!("{krate}::{name}");
        if NOT_AT_ROOT.iter().any(|(k, _)| *k == key) {
            continue;
        }
        let at_root = exported.get(name).is_some_and(|c| c == krate);
        let in_module = krate == "tinker_client"
            && path.first().is_some_and(|m| {
                exported
                    .get(m)
                    .is_some_and(|c| c == "tinker_client::module")
            });
        if !at_root && !in_module {
            missing.push(key);
        }
    }
    let leaked: Vec<&String> = exported
        .iter()
        .filter(|(name, krate)| {
            *krate == "tinker_client::module" && !PUBLIC_MODULES.contains(&name.as_str())
        })
        .map(|(name, _)| name)
        .collect();
    if missing.is_empty() && leaked.is_empty() {
        println!(
            "facade-check: {} types reachable from public signatures, all at the root",
            required.len()
        );
        return Ok(());
    }
    let mut msg = String::new();
    if !missing.is_empty() {
        msg.push_str(&format!(
            "types reachable from a public signature but not exported at the `tinker` root \
             (add them to crates/tinker/src/lib.rs): {}",
            missing.join(", ")
        ));
    }
    if !leaked.is_empty() {
        msg.push_str(&format!(
            "\ninternal tinker-client modules exported by the facade: {leaked:?}"
        ));
    }
    Err(msg)
}

/// Builds `package`'s rustdoc JSON and parses it.
fn rustdoc_json(root: &Path, package: &str, krate: &str) -> Result<Value, String> {
    // A target folder of its own: `RUSTC_BOOTSTRAP` changes the fingerprints, so sharing
    // `target/` would make the next ordinary build recheck every dependency.
    let target = facade_target(root);
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "rustdoc",
            "-p",
            package,
            "--lib",
            "--",
            "-Z",
            "unstable-options",
            "--output-format",
            "json",
        ])
        .status()
        .map_err(|e| format!("could not run cargo rustdoc: {e}"))?;
    if !status.success() {
        return Err(format!("cargo rustdoc -p {package} failed: {status}"));
    }
    let path = target.join("doc").join(format!("{krate}.json"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `<target>/facade-check`, beside the workspace's build outputs.
fn facade_target(root: &Path) -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from)
        .join("facade-check")
}

/// One rustdoc JSON crate: its items and the paths of every item it names.
struct Doc<'a> {
    index: &'a serde_json::Map<String, Value>,
    paths: &'a serde_json::Map<String, Value>,
    crates: BTreeMap<String, String>,
}

impl<'a> Doc<'a> {
    fn new(v: &'a Value) -> Result<Self, String> {
        let mut crates = BTreeMap::new();
        if let Some(ext) = v["external_crates"].as_object() {
            for (id, c) in ext {
                crates.insert(id.clone(), c["name"].as_str().unwrap_or("").to_owned());
            }
        }
        if let Some(name) = v["index"]
            .get(id_key(&v["root"]))
            .and_then(|r| r["name"].as_str())
        {
            crates.insert("0".into(), name.to_owned());
        }
        Ok(Self {
            index: v["index"]
                .as_object()
                .ok_or("rustdoc JSON without `index`")?,
            paths: v["paths"]
                .as_object()
                .ok_or("rustdoc JSON without `paths`")?,
            crates,
        })
    }

    /// `(crate name, item path without the crate, kind)` of an id.
    fn path_of(&self, id: &str) -> Option<(String, Vec<String>, String)> {
        let p = self.paths.get(id)?;
        let krate = self.crates.get(&id_key(&p["crate_id"]))?.clone();
        let path: Vec<String> = p["path"]
            .as_array()?
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect();
        let kind = p["kind"].as_str().unwrap_or("").to_owned();
        Some((krate, path.into_iter().skip(1).collect(), kind))
    }

    /// The id of this crate's item at `path` (without the crate name).
    fn id_at(&self, path: &[String]) -> Option<String> {
        self.paths.iter().find_map(|(id, p)| {
            let same = id_key(&p["crate_id"]) == "0"
                && p["path"].as_array().is_some_and(|a| {
                    a.len() == path.len() + 1
                        && a.iter()
                            .skip(1)
                            .zip(path)
                            .all(|(x, y)| x.as_str() == Some(y.as_str()))
                });
            same.then(|| id.clone())
        })
    }
}

/// JSON ids are numbers in recent formats and strings in older ones.
fn id_key(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every item id a JSON fragment names through a path (`{"id", "args", ...}`).
fn named_ids(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if m.contains_key("id") && m.contains_key("args") {
                out.push(id_key(&m["id"]));
            }
            for x in m.values() {
                named_ids(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| named_ids(x, out)),
        _ => {}
    }
}

/// What an item's public surface names: a function's signature and bounds, a field's
/// type, a variant's fields, an alias's target, and for structs and enums their public
/// fields, variants and inherent methods.
fn surface(doc: &Doc<'_>, item: &Value, out: &mut Vec<String>) {
    let Some(inner) = item["inner"].as_object() else {
        return;
    };
    for (kind, body) in inner {
        match kind.as_str() {
            "function" => {
                named_ids(&body["sig"], out);
                named_ids(&body["decl"], out);
                named_ids(&body["generics"], out);
            }
            "struct_field" | "type_alias" => named_ids(body, out),
            "variant" => {
                named_ids(&body["kind"], out);
                for id in field_ids(&body["kind"]) {
                    if let Some(f) = doc.index.get(&id) {
                        surface(doc, f, out);
                    }
                }
            }
            "struct" | "enum" | "union" => {
                let mut members = field_ids(&body["kind"]);
                members.extend(field_ids(&body["fields"]));
                if let Some(vs) = body["variants"].as_array() {
                    members.extend(vs.iter().map(id_key));
                }
                for imp in body["impls"].as_array().into_iter().flatten() {
                    let Some(imp) = doc.index.get(&id_key(imp)) else {
                        continue;
                    };
                    let i = &imp["inner"]["impl"];
                    if i["trait"].is_null() && !i["is_synthetic"].as_bool().unwrap_or(false) {
                        members.extend(i["items"].as_array().into_iter().flatten().map(id_key));
                    }
                }
                for id in members {
                    if let Some(m) = doc.index.get(&id)
                        && is_public(m)
                    {
                        surface(doc, m, out);
                    }
                }
            }
            _ => {}
        }
    }
}

fn field_ids(kind: &Value) -> Vec<String> {
    let mut ids = Vec::new();
    match kind {
        Value::Object(m) => {
            for (k, v) in m {
                match k.as_str() {
                    "plain" | "struct" => {
                        ids.extend(v["fields"].as_array().into_iter().flatten().map(id_key))
                    }
                    "tuple" => ids.extend(
                        v.as_array()
                            .into_iter()
                            .flatten()
                            .filter(|x| !x.is_null())
                            .map(id_key),
                    ),
                    _ => {}
                }
            }
        }
        Value::Array(a) => ids.extend(a.iter().filter(|x| !x.is_null()).map(id_key)),
        _ => {}
    }
    ids
}

fn is_public(item: &Value) -> bool {
    item["visibility"].as_str() == Some("public")
}

/// `(crate, path in the crate)` of every struct, enum, union, alias or trait of our crates
/// that a public signature of `tinker-client` reaches, following `tinker-types` types
/// inward.
fn reachable_types(
    client: &Value,
    types: &Value,
) -> Result<BTreeSet<(String, Vec<String>)>, String> {
    let client = Doc::new(client)?;
    let types = Doc::new(types)?;
    let mut queue: VecDeque<(bool, String)> = VecDeque::new();
    let mut found = BTreeSet::new();
    let mut seen = BTreeSet::new();
    // Start: every public function, field, variant and alias of tinker-client.
    for item in client.index.values() {
        if id_key(&item["crate_id"]) != "0" {
            continue;
        }
        let inner = item["inner"].as_object();
        let starts = inner.is_some_and(|i| {
            i.contains_key("function")
                || i.contains_key("struct_field")
                || i.contains_key("type_alias")
                || i.contains_key("variant")
        });
        if starts && (is_public(item) || inner.is_some_and(|i| i.contains_key("variant"))) {
            let mut ids = Vec::new();
            surface(&client, item, &mut ids);
            queue.extend(ids.into_iter().map(|id| (true, id)));
        }
    }
    while let Some((in_client, id)) = queue.pop_front() {
        let doc = if in_client { &client } else { &types };
        let Some((krate, path, kind)) = doc.path_of(&id) else {
            continue;
        };
        if !OUR_CRATES.contains(&krate.as_str()) {
            continue;
        }
        if !seen.insert((krate.clone(), path.clone())) {
            continue;
        }
        if matches!(
            kind.as_str(),
            "struct" | "enum" | "union" | "type_alias" | "trait"
        ) {
            found.insert((krate.clone(), path.clone()));
        }
        // Walk the item itself, in the crate that defines it.
        let (home, home_in_client) = if krate == "tinker_client" {
            (&client, true)
        } else {
            (&types, false)
        };
        let local_id = if in_client == home_in_client && krate == doc.crates["0"] {
            Some(id.clone())
        } else {
            home.id_at(&path)
        };
        if let Some(item) = local_id.and_then(|i| home.index.get(&i)) {
            let mut ids = Vec::new();
            surface(home, item, &mut ids);
            queue.extend(ids.into_iter().map(|i| (home_in_client, i)));
        }
    }
    Ok(found)
}

/// Name → crate of every item at the facade's root (`tinker_client::module` for a
/// re-exported module of the client).
fn root_exports(facade: &Value) -> Result<BTreeMap<String, String>, String> {
    let doc = Doc::new(facade)?;
    let root = doc
        .index
        .get(&id_key(&facade["root"]))
        .ok_or("the facade's rustdoc JSON has no root module")?;
    let mut out = BTreeMap::new();
    for id in root["inner"]["module"]["items"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(item) = doc.index.get(&id_key(id)) else {
            continue;
        };
        if let Some(u) = item["inner"].get("use") {
            let name = u["name"].as_str().unwrap_or("").to_owned();
            let target = id_key(&u["id"]);
            let krate = match doc.path_of(&target) {
                Some((k, _, kind)) if kind == "module" && k == "tinker_client" => {
                    "tinker_client::module".to_owned()
                }
                Some((k, _, _)) => k,
                // A re-exported item rustdoc inlined into the facade.
                None => doc
                    .index
                    .get(&target)
                    .and_then(|t| doc.crates.get(&id_key(&t["crate_id"])))
                    .cloned()
                    .unwrap_or_default(),
            };
            out.insert(name, krate);
        } else if let Some(name) = item["name"].as_str() {
            out.insert(name.to_owned(), "tinker".to_owned());
        }
    }
    Ok(out)
}
