//! The protobuf path of the wire protocol (`proto/tinker_public.proto`).
