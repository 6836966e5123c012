use super::*;

#[test]
fn header_fields_are_split_once_and_decoded_on_demand() {
    let header = b"Subject: =?utf-8?q?R=C3=A9union_du_conseil?=\r\nX-Tag: un\r\n deux\r\nx-tag: trois\r\n\r\n";
    let fields = parse_fields(header);
    let names: Vec<&str> = fields.iter().map(|field| field.name.as_str()).collect();
    assert_eq!(names, ["subject", "x-tag", "x-tag"]);
    assert!(fields.iter().all(|field| field.decoded.get().is_none()));
    let matching = |name: &str, value: &str| {
        fields
            .iter()
            .filter(|field| field.name == name)
            .any(|field| field.decoded.get_or_init(|| decode_header_value(&field.value).to_lowercase()).contains(value))
    };
    assert!(matching("subject", "réunion du"));
    assert!(matching("x-tag", "un deux") || matching("x-tag", "un  deux"));
    assert!(matching("x-tag", "trois"));
    assert!(!matching("x-tag", "quatre"));
    // Only the fields asked about were decoded.
    assert_eq!(fields.iter().filter(|field| field.decoded.get().is_some()).count(), 3);
}

#[test]
fn sets_as_ranges() {
    let ranges = vec![(1, 3), (7, 7), (10, 20)];
    let inside: Vec<u32> = (0..25).filter(|n| view::in_ranges(&ranges, *n)).collect();
    assert_eq!(inside, [1, 2, 3, 7, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
    assert!(!view::in_ranges(&[], 1));
}
