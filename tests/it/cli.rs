//! The command line itself: completions and man pages are generated from the same flag
//! definitions as the parser.

use crate::common::Workdir;

#[test]
fn completions_name_every_command_for_every_shell() {
    let dir = Workdir::new();
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = dir.run(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).expect("utf-8 script");
        for word in [
            "validate",
            "import",
            "export",
            "reconcile",
            "check",
            "sandbox",
            "resume",
            "target",
        ] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let out = dir.run(&["completions", "tcsh"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn man_pages_cover_the_commands_and_their_flags() {
    let dir = Workdir::new();
    let out = dir.run(&["man"]);
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).expect("utf-8 page");
    assert!(page.contains(".TH deskport 1"), "{page}");
    assert!(page.contains("reconcile"));
    let out = dir.run(&["man", "--out-dir", "pages/man1"]);
    assert!(out.status.success(), "{out:?}");
    let import = dir.read("pages/man1/deskport-import.1");
    for flag in [
        "resume",
        "restart",
        "dry\\-run",
        "base\\-url",
        "max\\-concurrency",
    ] {
        assert!(import.contains(flag), "deskport-import.1 lacks {flag}");
    }
    for name in [
        "deskport.1",
        "deskport-validate.1",
        "deskport-export.1",
        "deskport-sandbox.1",
    ] {
        assert!(dir.file(&format!("pages/man1/{name}")).exists(), "{name}");
    }
}
