//! Keyset pagination (AIP-158): complete and ordered, default and maximum
//! page sizes, tokens bound to their query and tamper-evident, stable under
//! concurrent inserts.

use std::sync::Arc;

use rand::seq::SliceRandom;
use slrgov_domain::model::Account;
use slrgov_domain::names::{AccountSelector, InstanceKey};
use slrgov_domain::types::InstanceId;
use slrgov_domain::{AccountScope, Role};
use slrgov_store::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageRequest, Store};

use crate::support::*;

/// `token` with one character changed, at `at` (counted from the start).
fn flip(token: &str, at: usize) -> String {
    let mut bytes = token.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ascii token")
}

#[test]
fn page_request_parse() {
    assert_eq!(
        PageRequest::parse(0, "").expect("0"),
        PageRequest {
            size: DEFAULT_PAGE_SIZE,
            token: None
        }
    );
    assert_eq!(DEFAULT_PAGE_SIZE, 50);
    assert_eq!(PageRequest::parse(3, "").expect("3").size, 3);
    assert_eq!(PageRequest::parse(1000, "").expect("1000").size, 1000);
    assert_eq!(
        PageRequest::parse(1001, "").expect("1001").size,
        MAX_PAGE_SIZE
    );
    assert_eq!(PageRequest::parse(i32::MAX, "").expect("max").size, 1000);
    assert!(PageRequest::parse(-1, "").is_err());
    assert!(PageRequest::parse(i32::MIN, "").is_err());
    assert_eq!(
        PageRequest::parse(5, "abc")
            .expect("token")
            .token
            .as_deref(),
        Some("abc")
    );
}

pub async fn case_account_pages(store: Arc<dyn Store>) {
    let ctx = admin();
    let mut numbers: Vec<u32> = (1..=7).collect();
    numbers.shuffle(&mut rand::rng());
    let mut expected: Vec<Account> = Vec::new();
    for n in numbers {
        expected.push(create_account(&store, n).await);
    }
    expected.sort_by(|a, b| a.account_id.cmp(&b.account_id));

    // Page by page, by hand: 3 + 3 + 1.
    let first = store
        .account_list(&ctx, &page(3, ""))
        .await
        .expect("page 1");
    assert_eq!(first.items, expected[0..3]);
    assert!(!first.next_page_token.is_empty());
    let second = store
        .account_list(&ctx, &page(3, &first.next_page_token))
        .await
        .expect("page 2");
    assert_eq!(second.items, expected[3..6]);
    assert!(!second.next_page_token.is_empty());
    let third = store
        .account_list(&ctx, &page(3, &second.next_page_token))
        .await
        .expect("page 3");
    assert_eq!(third.items, expected[6..7]);
    assert_eq!(third.next_page_token, "", "the last page has no token");
    // A token can be used again (it is not consumed).
    let again = store
        .account_list(&ctx, &page(3, &first.next_page_token))
        .await
        .expect("page 2 again");
    assert_eq!(again.items, second.items);

    for size in [1, 2, 3, 6, 7, 8] {
        let all = list_accounts_all(&store, &ctx, size).await;
        assert_eq!(all, expected, "page size {size}");
    }
    // Exactly a page: the last page is full and has no token.
    let exact = store.account_list(&ctx, &page(7, "")).await.expect("exact");
    assert_eq!(exact.items, expected);
    assert_eq!(exact.next_page_token, "");

    // Bad tokens.
    let token = first.next_page_token.clone();
    for at in [
        0,
        token.len() / 3,
        token.find('.').expect("dot") + 1,
        token.len() - 2,
    ] {
        let tampered = flip(&token, at);
        assert_ne!(tampered, token);
        assert_bad_page_token(store.account_list(&ctx, &page(3, &tampered)).await);
    }
    for garbage in ["garbage", "a.b", ".", "%%%", "e30.AAAA", &"A".repeat(4000)] {
        assert_bad_page_token(store.account_list(&ctx, &page(3, garbage)).await);
    }
    // A token issued to another caller is not valid for this one.
    let other = caller("someone-else", Role::Admin, AccountScope::All);
    assert_bad_page_token(store.account_list(&other, &page(3, &token)).await);
    // A token of another method.
    assert_bad_page_token(
        store
            .instance_list(&ctx, &AccountSelector::All, &filter(""), &page(3, &token))
            .await,
    );
}

pub async fn case_default_page_size(store: Arc<dyn Store>) {
    let ctx = admin();
    let mut expected = Vec::new();
    for n in 1..=52 {
        expected.push(create_account(&store, n).await);
    }
    let first = store
        .account_list(&ctx, &page(0, ""))
        .await
        .expect("default");
    assert_eq!(first.items.len(), 50, "page_size 0 is 50");
    assert_eq!(first.items, expected[..50]);
    assert!(!first.next_page_token.is_empty());
    let rest = store
        .account_list(&ctx, &page(0, &first.next_page_token))
        .await
        .expect("rest");
    assert_eq!(rest.items, expected[50..]);
    assert_eq!(rest.next_page_token, "");
    // Above the maximum: clamped, so one page holds all 52.
    let big = store
        .account_list(&ctx, &page(5000, ""))
        .await
        .expect("big");
    assert_eq!(big.items, expected);
    assert_eq!(big.next_page_token, "");

    // Instances too.
    let a = expected[0].account_id.clone();
    let mut instances = Vec::new();
    for n in 1..=51 {
        instances.push(create_instance(&store, &a, &instance_id(n), "us-east-1").await);
    }
    let first = store
        .instance_list(
            &ctx,
            &AccountSelector::One(a.clone()),
            &filter(""),
            &page(0, ""),
        )
        .await
        .expect("default");
    assert_eq!(first.items, instances[..50]);
    assert!(!first.next_page_token.is_empty());
    let big = store
        .instance_list(&ctx, &AccountSelector::All, &filter(""), &page(100_000, ""))
        .await
        .expect("big");
    assert_eq!(big.items, instances);
    assert_eq!(big.next_page_token, "");
}

pub async fn case_instance_pages(store: Arc<dyn Store>) {
    let ctx = admin();
    let accounts = [
        create_account(&store, 3).await.account_id,
        create_account(&store, 1).await.account_id,
        create_account(&store, 2).await.account_id,
    ];
    let mut created = Vec::new();
    for n in 0..25 {
        let account = &accounts[n % 3];
        created.push(create_instance(&store, account, &random_instance_id(), "us-east-1").await);
    }
    let mut expected = created.clone();
    expected.sort_by_key(|i| i.key());

    // Across accounts, 3 at a time.
    let all = list_instances_all(&store, &ctx, &AccountSelector::All, &filter(""), 3).await;
    assert_unique(&keys(&all));
    assert_eq!(all, expected);
    for size in [1, 4, 24, 25, 26] {
        assert_eq!(
            list_instances_all(&store, &ctx, &AccountSelector::All, &filter(""), size).await,
            expected,
            "page size {size}"
        );
    }
    // Within one account.
    for account in &accounts {
        let parent = AccountSelector::One(account.clone());
        let mine = list_instances_all(&store, &ctx, &parent, &filter(""), 3).await;
        let want: Vec<_> = expected
            .iter()
            .filter(|i| &i.account_id == account)
            .cloned()
            .collect();
        assert_eq!(mine, want);
    }

    // Tokens are bound to the parent and the filter.
    let a = accounts[1].clone();
    let b = accounts[2].clone();
    let of_a = store
        .instance_list(
            &ctx,
            &AccountSelector::One(a.clone()),
            &filter(""),
            &page(2, ""),
        )
        .await
        .expect("page of a");
    let token = of_a.next_page_token;
    assert!(!token.is_empty());
    for (parent, text) in [
        (AccountSelector::One(b.clone()), ""),
        (AccountSelector::All, ""),
        (AccountSelector::One(a.clone()), r#"region = "us-east-1""#),
        (
            AccountSelector::One(a.clone()),
            "linked_role_state = ABSENT",
        ),
    ] {
        assert_bad_page_token(
            store
                .instance_list(&ctx, &parent, &filter(text), &page(2, &token))
                .await,
        );
    }
    // ...but not to the page size.
    let next = store
        .instance_list(
            &ctx,
            &AccountSelector::One(a.clone()),
            &filter(""),
            &page(5, &token),
        )
        .await
        .expect("another page size with the same query");
    let want_a: Vec<_> = expected
        .iter()
        .filter(|i| i.account_id == a)
        .cloned()
        .collect();
    assert_eq!(next.items, want_a[2..7]);
    // An account list token is not an instance list token, nor the reverse.
    let accounts_token = store
        .account_list(&ctx, &page(1, ""))
        .await
        .expect("accounts")
        .next_page_token;
    assert_bad_page_token(
        store
            .instance_list(
                &ctx,
                &AccountSelector::All,
                &filter(""),
                &page(2, &accounts_token),
            )
            .await,
    );
    assert_bad_page_token(store.account_list(&ctx, &page(2, &token)).await);
    // Tampered and garbage tokens.
    for at in [1, token.len() / 2, token.len() - 1] {
        assert_bad_page_token(
            store
                .instance_list(
                    &ctx,
                    &AccountSelector::One(a.clone()),
                    &filter(""),
                    &page(2, &flip(&token, at)),
                )
                .await,
        );
    }
    for garbage in [
        "x",
        "..",
        "eyJ2IjoxfQ.AAAAAAAAAAAAAAAAAAAAAA",
        "\u{e9}t\u{e9}",
    ] {
        assert_bad_page_token(
            store
                .instance_list(&ctx, &AccountSelector::All, &filter(""), &page(2, garbage))
                .await,
        );
    }
}

pub async fn case_pages_stable_under_inserts(store: Arc<dyn Store>) {
    let ctx = admin();
    let a = create_account(&store, 1).await.account_id;
    // Even ids 2, 4, ... 20.
    let mut originals = Vec::new();
    for n in 1..=10 {
        originals.push(create_instance(&store, &a, &instance_id(2 * n), "us-east-1").await);
    }
    let parent = AccountSelector::One(a.clone());

    let mut seen: Vec<InstanceKey> = Vec::new();
    let mut token = String::new();
    let mut inserted_before: Vec<InstanceKey> = Vec::new();
    let mut inserted_after: Vec<InstanceKey> = Vec::new();
    for round in 1..=100u32 {
        let got = store
            .instance_list(&ctx, &parent, &filter(""), &page(3, &token))
            .await
            .expect("page");
        seen.extend(keys(&got.items));
        if got.next_page_token.is_empty() {
            break;
        }
        token = got.next_page_token;
        // Between pages: one row before the cursor, one after it.
        let cursor = seen.last().expect("a full page").clone();
        let before =
            InstanceId::parse(&format!("00000000-0000-4000-8000-{round:012x}")).expect("id");
        create_instance(&store, &a, &before, "us-east-1").await;
        inserted_before.push(key(&a, &before));
        let after = key(&a, &instance_id(6 * round + 1));
        assert!(after > cursor, "fixture: {after} must sort after {cursor}");
        create_instance(&store, &a, &after.instance_id, "us-east-1").await;
        inserted_after.push(after);
    }
    assert!(inserted_after.len() >= 3, "several rounds ran");
    assert_unique(&seen);
    for original in &originals {
        assert!(
            seen.contains(&original.key()),
            "{} was skipped",
            original.key()
        );
    }
    // Keyset pagination, not offsets: rows inserted after the cursor are
    // listed, rows inserted before it neither shift nor repeat anything.
    for k in &inserted_after {
        assert!(
            seen.contains(k),
            "{k}, inserted after the cursor, was not listed"
        );
    }
    for k in &inserted_before {
        assert!(
            !seen.contains(k),
            "{k}, inserted before the cursor, was listed"
        );
    }
    assert_eq!(seen.len(), originals.len() + inserted_after.len());
    // Sorted, too.
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);

    // Deleting rows between pages skips nothing else.
    let everything = list_instances_all(&store, &ctx, &parent, &filter(""), 1000).await;
    let first = store
        .instance_list(&ctx, &parent, &filter(""), &page(4, ""))
        .await
        .expect("first");
    let last_of_first = first.items.last().expect("a full page").key();
    store
        .instance_delete(
            &ctx,
            &last_of_first,
            None,
            delete_done(&last_of_first),
            None,
        )
        .await
        .expect("delete the cursor row");
    let next = everything[4].key();
    store
        .instance_delete(&ctx, &next, None, delete_done(&next), None)
        .await
        .expect("delete the next row");
    let mut rest = Vec::new();
    let mut token = first.next_page_token;
    while !token.is_empty() {
        let got = store
            .instance_list(&ctx, &parent, &filter(""), &page(4, &token))
            .await
            .expect("page after deletes");
        rest.extend(keys(&got.items));
        token = got.next_page_token;
    }
    let want: Vec<_> = keys(&everything[5..]);
    assert_eq!(rest, want);
}
