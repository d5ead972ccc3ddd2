//! The file's bytes are UTF-8 whatever the session's client_encoding: a load in a LATIN1,
//! WIN1252, EUC_JP or SJIS session stores exactly what a UTF8 session stores, for the fast
//! paths (text, varchar, char, json, jsonb) and for every value made by a type's input function
//! (enums with non-ASCII labels, arrays, domains, composites, name), characters the client
//! encoding cannot represent included; bad values fail the same way. A database that is not
//! UTF8 is refused with a clear error. Compared on the server: nothing non-ASCII is sent.

use pg_ingest_tests::{connect, connect_as, db_error, DataDir, TestDb};
use postgres::Client;

const SCHEMA: &str = "
    CREATE TYPE mood AS ENUM ('café', '日本', 'naïve €', 'plain');
    CREATE DOMAIN short_text AS text CHECK (length(VALUE) <= 8);
    CREATE TYPE pair AS (a text, b int);
    CREATE FUNCTION make_table(name text) RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
      EXECUTE format('CREATE TABLE %I (id int, t text, vc varchar(12), bc char(6), j json, jb jsonb, m mood,
                                       ta text[], ja jsonb[], d short_text, p pair, n name,
                                       dflt text DEFAULT ''défaut ☃'')', name);
    END $$;";

/// Lines with characters of Latin-1, of Windows-1252 only (€), of Japanese, beyond the BMP
/// (escaped as surrogate pairs too), and `\u` escapes.
fn content() -> String {
    let lines = [
        r#"{"id":1,"t":"café","vc":"naïve","bc":"é","j":{"k":"Zoë"},"jb":{"k":"Zoë","é":[1]},"m":"café","ta":["é","日本"],"ja":[{"a":"é"}],"d":"Noël","p":"(Zoë,1)","n":"Ærø"}"#,
        r#"{"id":2,"t":"日本語のテキスト","vc":"日本語","bc":"日本","j":["日本"],"jb":"日本","m":"日本","ta":["語"],"ja":["日"],"d":"日本","p":"(日本,2)","n":"日本"}"#,
        r#"{"id":3,"t":"price: 5 €, ‰","vc":"€€€","bc":"€","j":"€","jb":{"€":"‰"},"m":"naïve €","ta":["€"],"ja":[{"€":1}],"d":"€","p":"(€,3)","n":"€"}"#,
        r#"{"id":4,"t":"emoji 😀 and \ud83d\ude00","vc":"\u00e9\u00e8","bc":"😀","j":{"e":"😀"},"jb":{"e":"\ud83d\ude00"},"m":"plain","ta":["😀"],"ja":["\u00e9"],"d":"\u00e9","p":"(\u00e9,4)","n":"😀"}"#,
        r#"{"id":5,"t":"plain ascii","vc":"x","bc":"y","j":1,"jb":2,"m":"plain","ta":[],"ja":[],"d":"z","p":"(a,5)","n":"n"}"#,
    ];
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// One digest of the whole table, computed on the server.
fn digest(c: &mut Client, table: &str) -> (i64, String) {
    let r = c
        .query_one(
            &format!("SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY id), '')) FROM {table} x"),
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

fn load(c: &mut Client, path: &str, table: &str, extra: &str) -> Result<(), postgres::Error> {
    c.query(&format!("SELECT * FROM ingest_jsonl($1, '{table}'{extra})"), &[&path]).map(|_| ())
}

fn rejects(c: &mut Client, table: &str) -> Vec<(i64, Option<String>, String)> {
    c.query(
        "SELECT r.line, r.column_name, r.sqlstate FROM ingest.rejects r JOIN ingest.loads l USING (load_id) \
          WHERE l.target = $1 ORDER BY r.line",
        &[&format!("public.{table}")],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

#[test]
fn every_client_encoding_stores_what_a_utf8_session_stores() {
    let mut db = TestDb::new("enc_clients");
    db.client.batch_execute(SCHEMA).unwrap();
    let dir = DataDir::new();
    let path = dir.write("values.jsonl", content());
    // values that fail: too long for varchar(12) and for the domain, counted in characters
    let bad = dir.write(
        "bad.jsonl",
        "{\"id\":10,\"vc\":\"ééééééééééééé\"}\n{\"id\":11,\"d\":\"日本日本日本日本日\"}\n{\"id\":12,\"m\":\"cafe\"}\n\
         {\"id\":13,\"vc\":\"éééééééééééé\",\"d\":\"日本日本日本日本\"}\n",
    );

    let mut utf8 = connect_as(&db.name, "postgres");
    utf8.batch_execute("SET client_encoding = 'UTF8'; SELECT make_table('t_utf8')").unwrap();
    load(&mut utf8, &path, "t_utf8", "").unwrap();
    load(&mut utf8, &bad, "t_utf8", ", on_error => 'skip'").unwrap();
    let expected = digest(&mut utf8, "t_utf8");
    assert_eq!(expected.0, 6);
    // the UTF8 session's values are what INSERT gives (the differential tests check each type)
    let cafe: bool = utf8
        .query_one("SELECT t = 'café' AND m = 'café' AND jb->>'é' = '[1]' AND n = 'Ærø' FROM t_utf8 WHERE id = 1", &[])
        .unwrap()
        .get(0);
    assert!(cafe);
    let expected_rejects = rejects(&mut utf8, "t_utf8");
    assert_eq!(expected_rejects.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3]);

    for encoding in ["LATIN1", "WIN1252", "EUC_JP", "SJIS", "LATIN9"] {
        let table = format!("t_{}", encoding.to_lowercase());
        let mut c = connect_as(&db.name, "postgres");
        c.batch_execute(&format!("SET client_encoding = '{encoding}'")).unwrap();
        c.batch_execute(&format!("SELECT make_table('{table}')")).unwrap();
        load(&mut c, &path, &table, "").unwrap_or_else(|e| panic!("{encoding}: {e}"));
        load(&mut c, &bad, &table, ", on_error => 'skip'").unwrap_or_else(|e| panic!("{encoding}: {e}"));
        // with writers too (the workers take no client encoding of their own)
        c.batch_execute(&format!("CREATE TABLE {table}_w (LIKE {table} INCLUDING DEFAULTS)")).unwrap();
        load(&mut c, &path, &format!("{table}_w"), ", writers => 2").unwrap_or_else(|e| panic!("{encoding}: {e}"));
        c.batch_execute(&format!("INSERT INTO {table}_w SELECT * FROM {table} WHERE id = 13")).unwrap();
        assert_eq!(digest(&mut utf8, &table), expected, "{encoding}: stored values differ from a UTF8 session's");
        assert_eq!(digest(&mut utf8, &format!("{table}_w")), expected, "{encoding} with writers");
        assert_eq!(rejects(&mut utf8, &table), expected_rejects, "{encoding}: rejects differ");
    }
}

#[test]
fn a_database_that_is_not_utf8_is_refused_clearly() {
    let mut admin = connect("postgres");
    admin.batch_execute("DROP DATABASE IF EXISTS pgi_e2e_enc_latin1 WITH (FORCE)").unwrap();
    admin
        .batch_execute(
            "CREATE DATABASE pgi_e2e_enc_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
        )
        .unwrap();
    let mut c = connect_as("pgi_e2e_enc_latin1", "postgres");
    c.batch_execute("CREATE EXTENSION pg_ingest; CREATE TABLE t (id int, v text)").unwrap();
    let dir = DataDir::new();
    let path = dir.write("t.jsonl", "{\"id\":1,\"v\":\"café\"}\n");
    let e = load(&mut c, &path, "t", "").unwrap_err();
    let (code, message, _) = db_error(&e);
    assert_eq!(code, "0A000");
    assert!(message.contains("UTF8") && message.contains("LATIN1"), "{message}");
    let n: i64 = c.query_one("SELECT count(*) FROM t", &[]).unwrap().get(0);
    assert_eq!(n, 0);
}
