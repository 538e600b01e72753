//! Every service, method, message, field, enum and enum value of the
//! slrgov.v1 API has a comment: they are what `grpcurl describe` shows
//! callers. A new element without one fails here.

use prost::Message;
use prost_types::source_code_info::Location;
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};
use std::collections::HashSet;

fn commented(locations: &[Location]) -> HashSet<Vec<i32>> {
    locations
        .iter()
        .filter(|l| !l.leading_comments().trim().is_empty())
        .map(|l| l.path.clone())
        .collect()
}

fn check_enum(
    e: &EnumDescriptorProto,
    path: Vec<i32>,
    name: &str,
    have: &HashSet<Vec<i32>>,
    missing: &mut Vec<String>,
) {
    if !have.contains(&path) {
        missing.push(format!("enum {name}.{}", e.name()));
    }
    for (i, value) in e.value.iter().enumerate() {
        let mut p = path.clone();
        p.extend([2, i as i32]);
        if !have.contains(&p) {
            missing.push(format!("enum value {name}.{}.{}", e.name(), value.name()));
        }
    }
}

fn check_message(
    m: &DescriptorProto,
    path: Vec<i32>,
    scope: &str,
    have: &HashSet<Vec<i32>>,
    missing: &mut Vec<String>,
) {
    let name = format!("{scope}.{}", m.name());
    if !have.contains(&path) {
        missing.push(format!("message {name}"));
    }
    for (i, field) in m.field.iter().enumerate() {
        let mut p = path.clone();
        p.extend([2, i as i32]);
        if !have.contains(&p) {
            missing.push(format!("field {name}.{}", field.name()));
        }
    }
    for (i, nested) in m.nested_type.iter().enumerate() {
        if nested.options.as_ref().is_some_and(|o| o.map_entry()) {
            continue;
        }
        let mut p = path.clone();
        p.extend([3, i as i32]);
        check_message(nested, p, &name, have, missing);
    }
    for (i, e) in m.enum_type.iter().enumerate() {
        let mut p = path.clone();
        p.extend([4, i as i32]);
        check_enum(e, p, &name, have, missing);
    }
}

#[test]
fn every_element_of_the_api_is_commented() {
    let set = FileDescriptorSet::decode(slrgov_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let mut missing = Vec::new();
    let mut files = 0;
    for file in set.file.iter().filter(|f| f.package() == "slrgov.v1") {
        files += 1;
        let info = file.source_code_info.as_ref().expect("source info is kept");
        let have = commented(&info.location);
        for (i, m) in file.message_type.iter().enumerate() {
            check_message(m, vec![4, i as i32], "slrgov.v1", &have, &mut missing);
        }
        for (i, e) in file.enum_type.iter().enumerate() {
            check_enum(e, vec![5, i as i32], "slrgov.v1", &have, &mut missing);
        }
        for (i, s) in file.service.iter().enumerate() {
            if !have.contains(&vec![6, i as i32]) {
                missing.push(format!("service {}", s.name()));
            }
            for (j, method) in s.method.iter().enumerate() {
                if !have.contains(&vec![6, i as i32, 2, j as i32]) {
                    missing.push(format!("rpc {}.{}", s.name(), method.name()));
                }
            }
        }
    }
    assert!(files >= 5, "the slrgov.v1 files are in the descriptor set");
    assert!(
        missing.is_empty(),
        "uncommented API elements:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_listed_service_exists_in_the_descriptor_set() {
    let set = FileDescriptorSet::decode(slrgov_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let services: HashSet<String> = set
        .file
        .iter()
        .flat_map(|f| {
            f.service
                .iter()
                .map(move |s| format!("{}.{}", f.package(), s.name()))
        })
        .collect();
    for name in slrgov_proto::SERVICE_NAMES {
        assert!(services.contains(*name), "{name}");
    }
}
