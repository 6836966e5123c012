use crate::range;

#[test]
fn range_names_the_key() {
    assert_eq!(range("smtp", "errors_max", 5, 1, 10), Ok(()));
    assert_eq!(range("smtp", "errors_max", 1, 1, 1), Ok(()));
    let problem = range("smtp", "errors_max", 0, 1, 10).unwrap_err();
    assert_eq!(problem.to_string(), "smtp.errors_max: 0 is out of range: it must be between 1 and 10");
}
