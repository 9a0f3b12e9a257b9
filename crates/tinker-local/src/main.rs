//! `tinker-local`: run the local Tinker-compatible server.

fn main() {
    // The server is not implemented yet; refuse loudly rather than pretend.
    #[allow(clippy::print_stderr)]
    {
        eprintln!("tinker-local: the server is not implemented yet");
    }
    std::process::exit(2);
}
