//! The `graphgate` binary: everything is in the library; see `cli`.

fn main() -> std::process::ExitCode {
    graphgate::cli::main()
}
