//! Proves `proto/tinker_public.proto` equals the schema embedded in the official SDK.
//!
//! `scripts/fixtures/gen_proto_fixtures.py` dumps the SDK's serialized `FileDescriptorProto`
//! (from `tinker/proto/tinker_public_pb2.py`) to `tests/fixtures/proto/sdk_descriptor.bin`.
//! Here our `.proto` is compiled with `protox` (pure Rust, no `protoc`) and the two
//! descriptors are compared field by field, ignoring only what a compiler derives or
//! records on the side: `json_name` and source locations/comments.

use std::path::PathBuf;

use prost::Message;
use prost_types::{DescriptorProto, FileDescriptorProto};

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sdk_descriptor() -> FileDescriptorProto {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proto/sdk_descriptor.bin");
    let bytes = std::fs::read(&path).expect("read the SDK descriptor fixture");
    FileDescriptorProto::decode(bytes.as_slice()).expect("decode the SDK descriptor")
}

fn our_descriptor() -> FileDescriptorProto {
    let set = protox::compile(["tinker_public.proto"], [workspace_root().join("proto")])
        .expect("compile proto/tinker_public.proto with protox");
    set.file
        .into_iter()
        .find(|f| f.name() == "tinker_public.proto")
        .expect("the compiled set holds tinker_public.proto")
}

/// Drops what is not part of the schema's meaning: `json_name` (derived from the field
/// name; protoc fills it, the SDK's embedded copy does not) and source info (comments).
fn normalize(mut file: FileDescriptorProto) -> FileDescriptorProto {
    fn message(m: &mut DescriptorProto) {
        for field in m.field.iter_mut().chain(m.extension.iter_mut()) {
            field.json_name = None;
        }
        m.nested_type.iter_mut().for_each(message);
    }
    file.source_code_info = None;
    file.message_type.iter_mut().for_each(message);
    for field in &mut file.extension {
        field.json_name = None;
    }
    file
}

#[test]
fn our_proto_equals_the_sdk_descriptor() {
    let ours = normalize(our_descriptor());
    let sdk = normalize(sdk_descriptor());
    if ours != sdk {
        let (a, b) = (format!("{sdk:#?}\n"), format!("{ours:#?}\n"));
        let diff = similar::TextDiff::from_lines(&a, &b)
            .unified_diff()
            .context_radius(10)
            .header("SDK 0.38.0 descriptor", "proto/tinker_public.proto")
            .to_string();
        panic!("proto/tinker_public.proto differs from the SDK's schema:\n{diff}");
    }
}

/// The comparison must notice a real schema change (a changed field number and type), or
/// the test above could pass by comparing nothing.
#[test]
fn a_changed_field_is_detected() {
    let sdk = normalize(sdk_descriptor());
    let mut changed = sdk.clone();
    let message = changed
        .message_type
        .iter_mut()
        .find(|m| m.name() == "ForwardBackwardRequest")
        .expect("ForwardBackwardRequest is in the schema");
    let field = message
        .field
        .iter_mut()
        .find(|f| f.name() == "seq_id")
        .expect("seq_id is a field");
    field.set_type(prost_types::field_descriptor_proto::Type::Int64);
    assert_ne!(sdk, changed);
    assert_eq!(sdk.message_type.len(), 23, "the SDK schema has 23 messages");
    assert_eq!(sdk.enum_type.len(), 2, "the SDK schema has 2 enums");
}
