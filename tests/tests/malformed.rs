//! Every malformed file of the corpus (`tern_tests::malformed`) is refused with its expected
//! error kind, never a panic.

use tern_tests::malformed::{cases, load_kind};

#[test]
fn each_malformed_file_gives_its_expected_error() {
    let mut wrong = Vec::new();
    let cases = cases();
    assert!(cases.len() >= 30);
    for case in &cases {
        let got = load_kind(&case.bytes);
        if got != case.expected {
            wrong.push(format!(
                "{}: expected {}, got {got}",
                case.name, case.expected
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
