//! Nobody gains rights through pg_ingest. Written as an attacker would: a role that can read
//! server files puts its own schema before pg_catalog with functions and operators named like
//! catalog ones; a non-superuser's SECURITY DEFINER function hands workers SQL that tries to
//! get back to the session user's rights; triggers on a job's table try the same; a role that
//! may not insert tries to queue for a lock. Every statement runs under statement_timeout.

use pg_ingest_tests::{connect, db_error, role, DataDir, TestDb};
use postgres::Client;

fn is_superuser(client: &mut Client, role: &str) -> bool {
    client.query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&role]).unwrap().get(0)
}

fn connect_as(db: &TestDb, role: &str) -> Client {
    pg_ingest_tests::connect_as(&db.name, role)
}

/// The attacker's schema: functions named like the catalog's and operators on the types the
/// ledger compares, each of which records who called it and tries to make `attacker` a
/// superuser (which only works when it runs with a superuser's rights).
fn plant_traps(c: &mut Client, attacker: &str) {
    c.batch_execute(&format!(
        "CREATE SCHEMA mine;
         CREATE TABLE mine.calls (fn text, current_role_name text, escalated boolean);
         GRANT INSERT, SELECT ON mine.calls TO PUBLIC;
         CREATE FUNCTION mine.trap(f text) RETURNS boolean LANGUAGE plpgsql AS $$
         DECLARE ok boolean := true;
         BEGIN
           BEGIN EXECUTE 'ALTER ROLE {attacker} SUPERUSER'; EXCEPTION WHEN others THEN ok := false; END;
           INSERT INTO mine.calls VALUES (f, current_user, ok);
           RETURN ok;
         END $$;
         CREATE FUNCTION mine.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS
           $$ BEGIN PERFORM mine.trap('clock_timestamp'); RETURN pg_catalog.clock_timestamp(); END $$;
         CREATE FUNCTION mine.to_timestamp(double precision) RETURNS timestamptz LANGUAGE plpgsql AS
           $$ BEGIN PERFORM mine.trap('to_timestamp'); RETURN pg_catalog.to_timestamp($1); END $$;
         CREATE FUNCTION mine.hashtext(text) RETURNS int LANGUAGE plpgsql AS
           $$ BEGIN PERFORM mine.trap('hashtext'); RETURN pg_catalog.hashtext($1); END $$;
         CREATE FUNCTION mine.pg_backend_pid() RETURNS int LANGUAGE plpgsql AS
           $$ BEGIN PERFORM mine.trap('pg_backend_pid'); RETURN pg_catalog.pg_backend_pid(); END $$;
         CREATE FUNCTION mine.quote_ident(text) RETURNS text LANGUAGE plpgsql AS
           $$ BEGIN PERFORM mine.trap('quote_ident'); RETURN pg_catalog.quote_ident($1); END $$;
         CREATE FUNCTION mine.eq_bigint(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS
           $$ BEGIN PERFORM mine.trap('= bigint'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
         CREATE OPERATOR mine.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = mine.eq_bigint);
         CREATE FUNCTION mine.eq_text(text, text) RETURNS boolean LANGUAGE plpgsql AS
           $$ BEGIN PERFORM mine.trap('= text'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
         CREATE OPERATOR mine.= (LEFTARG = text, RIGHTARG = text, FUNCTION = mine.eq_text);
         CREATE FUNCTION mine.eq_oid(oid, oid) RETURNS boolean LANGUAGE plpgsql AS
           $$ BEGIN PERFORM mine.trap('= oid'); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
         CREATE OPERATOR mine.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = mine.eq_oid);
         CREATE FUNCTION mine.eq_name(name, text) RETURNS boolean LANGUAGE plpgsql AS
           $$ BEGIN PERFORM mine.trap('= name'); RETURN $1::text OPERATOR(pg_catalog.=) $2; END $$;
         CREATE OPERATOR mine.= (LEFTARG = name, RIGHTARG = text, FUNCTION = mine.eq_name);
         GRANT USAGE ON SCHEMA mine TO PUBLIC;"
    ))
    .unwrap();
}

/// Calls of the traps by anyone but the attacker itself, and any that escalated.
fn trap_calls_with_rights(admin: &mut Client, attacker: &str) -> Vec<(String, String, bool)> {
    admin
        .query(
            "SELECT fn, current_role_name, escalated FROM mine.calls WHERE current_role_name <> $1 OR escalated",
            &[&attacker],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

fn lines(n: u32) -> String {
    (1..=n).map(|i| format!("{{\"id\":{i},\"v\":\"line {i}\"}}\n")).collect()
}

#[test]
fn a_shadowing_search_path_runs_nothing_with_the_owners_rights() {
    let attacker = "pgi_sec_shadow";
    let mut db = TestDb::new("sec_shadow");
    role(&mut db.client, attacker, "LOGIN");
    db.client.batch_execute(&format!("GRANT pg_read_server_files TO {attacker}")).unwrap();
    plant_traps(&mut db.client, attacker);
    db.client
        .batch_execute(&format!("CREATE TABLE t (id bigint, v text); GRANT INSERT, SELECT ON t TO {attacker};"))
        .unwrap();
    let dir = DataDir::new();
    let path = dir.write("t.jsonl", lines(50));
    let bad = dir.write("bad.jsonl", "{\"id\":1}\n{\"id\":\"x\"}\n");

    let mut c = connect_as(&db, attacker);
    c.batch_execute("SET search_path = mine, pg_catalog, public").unwrap();
    // a load, a re-load (the ledger is read), an append, rejects, a multi-writer load
    c.query("SELECT * FROM ingest_jsonl($1, 'public.t')", &[&path]).unwrap();
    c.query("SELECT * FROM ingest_jsonl($1, 'public.t')", &[&path]).unwrap();
    c.query("SELECT * FROM ingest_jsonl($1, 'public.t', on_error => 'skip')", &[&bad]).unwrap();
    c.query("SELECT * FROM ingest_jsonl($1, 'public.t', force => true, writers => 2)", &[&path]).unwrap();
    // jobs: submit, wait, cancel
    let job: i64 = c.query_one("SELECT ingest_jsonl_async($1, 'public.t', force => true)", &[&path]).unwrap().get(0);
    c.query("SELECT * FROM wait_job($1)", &[&job]).unwrap();
    c.query("SELECT cancel_job($1)", &[&job]).unwrap();
    c.query("SELECT * FROM run_batch(ARRAY['SELECT 1'])", &[]).unwrap();

    assert_eq!(trap_calls_with_rights(&mut db.client, attacker), vec![]);
    assert!(!is_superuser(&mut db.client, attacker));
    let n: i64 = db.client.query_one("SELECT count(*) FROM t", &[]).unwrap().get(0);
    assert_eq!(n, 50 + 1 + 50 + 50);
}

#[test]
fn cancel_job_checks_who_asks_before_touching_anything() {
    let (owner, other) = ("pgi_sec_job_owner", "pgi_sec_job_other");
    let mut db = TestDb::new("sec_cancel");
    role(&mut db.client, owner, "LOGIN");
    role(&mut db.client, other, "LOGIN");
    plant_traps(&mut db.client, other);
    db.client.batch_execute("CREATE TABLE t (id bigint, v text)").unwrap();
    let dir = DataDir::new();
    let path = dir.write("t.jsonl", lines(5));
    // a job of another role
    let mut admin = connect(&db.name);
    admin.batch_execute(&format!("GRANT pg_read_server_files TO {owner}; GRANT INSERT ON t TO {owner}")).unwrap();
    let mut o = connect_as(&db, owner);
    let job: i64 = o.query_one("SELECT ingest_jsonl_async($1, 'public.t')", &[&path]).unwrap().get(0);
    o.query("SELECT * FROM wait_job($1)", &[&job]).unwrap();

    let mut c = connect_as(&db, other);
    c.batch_execute("SET search_path = mine, pg_catalog, public").unwrap();
    let e = c.query("SELECT cancel_job($1)", &[&job]).unwrap_err();
    assert_eq!(db_error(&e).0, "42501");
    let e = c.query("SELECT cancel_job(123456)", &[]).unwrap_err();
    assert_eq!(db_error(&e).0, "42704");
    assert_eq!(trap_calls_with_rights(&mut db.client, other), vec![]);
    assert!(!is_superuser(&mut db.client, other));
}

#[test]
fn insert_privilege_is_checked_before_waiting_for_the_lock() {
    let attacker = "pgi_sec_nolock";
    let mut db = TestDb::new("sec_lock");
    role(&mut db.client, attacker, "LOGIN");
    db.client
        .batch_execute(&format!(
            "GRANT pg_read_server_files TO {attacker}; CREATE TABLE secret (id bigint, v text); \
             CREATE TABLE partly (id bigint, v text); GRANT INSERT (id) ON partly TO {attacker}"
        ))
        .unwrap();
    let dir = DataDir::new();
    let path = dir.write("secret.jsonl", lines(3));
    // the owner holds the table locked: a role that may not insert must not queue behind it
    let mut holder = connect(&db.name);
    holder.batch_execute("BEGIN; LOCK TABLE secret IN ACCESS EXCLUSIVE MODE").unwrap();
    let mut c = connect_as(&db, attacker);
    c.batch_execute("SET statement_timeout = '3s'").unwrap();
    for extra in ["", ", writers => 2"] {
        let e = c.query(&format!("SELECT * FROM ingest_jsonl($1, 'secret'{extra})"), &[&path]).unwrap_err();
        let (code, message, _) = db_error(&e);
        assert_eq!((code.as_str(), message.as_str()), ("42501", "permission denied for table secret"));
    }
    // INSERT on one column only: refused before anything is written, naming the column
    let e = c.query("SELECT * FROM ingest_jsonl($1, 'partly')", &[&path]).unwrap_err();
    let (code, _, detail) = db_error(&e);
    assert_eq!(code, "42501");
    assert!(detail.unwrap_or_default().contains("\"v\""));
    holder.batch_execute("ROLLBACK").unwrap();
    let loads: i64 = db.client.query_one("SELECT count(*) FROM ingest.loads", &[]).unwrap().get(0);
    assert_eq!(loads, 0);
}

/// A non-superuser's SECURITY DEFINER function that hands run_batch SQL meant to get back to
/// the session user (a superuser who calls the function).
#[test]
fn batch_workers_keep_the_callers_identity_and_security_context() {
    let attacker = "pgi_sec_definer";
    let mut db = TestDb::new("sec_definer");
    role(&mut db.client, attacker, "LOGIN");
    db.client
        .batch_execute(&format!(
            "CREATE TABLE seen (q int, who text, session_who text); GRANT ALL ON seen TO {attacker};
             CREATE TABLE outcome (q int, status text, sqlstate text, error text); GRANT ALL ON outcome TO {attacker};
             GRANT CREATE ON SCHEMA public TO {attacker};"
        ))
        .unwrap();
    let mut c = connect_as(&db, attacker);
    c.batch_execute(&format!(
        "CREATE FUNCTION public.innocent() RETURNS void LANGUAGE sql SECURITY DEFINER AS $f$
           INSERT INTO public.outcome SELECT query_no, status, sqlstate, error FROM public.run_batch(ARRAY[
             'INSERT INTO public.seen SELECT 1, current_user, session_user',
             'RESET ROLE; ALTER ROLE {attacker} SUPERUSER',
             'SET ROLE postgres; ALTER ROLE {attacker} SUPERUSER',
             'SET SESSION AUTHORIZATION postgres; ALTER ROLE {attacker} SUPERUSER',
             'SELECT set_config(''role'', ''postgres'', false); ALTER ROLE {attacker} SUPERUSER',
             'ALTER ROLE {attacker} SUPERUSER'], workers => 2);
         $f$;"
    ))
    .unwrap();
    // the superuser calls it, in a session where it set a role of its own as well
    db.client.batch_execute("SET statement_timeout = '60s'; SELECT public.innocent()").unwrap();
    assert!(!is_superuser(&mut db.client, attacker));
    let seen: Vec<(String, String)> = db
        .client
        .query("SELECT who, session_who FROM seen", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(seen, vec![(attacker.to_owned(), "postgres".to_owned())]);
    let outcome: Vec<(i32, String, Option<String>)> = db
        .client
        .query("SELECT q, status, sqlstate FROM outcome ORDER BY q", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(outcome[0], (1, "ok".to_owned(), None));
    for (q, status, code) in &outcome[1..] {
        assert_eq!(status, "error", "query {q} ran");
        assert_eq!(code.as_deref(), Some("42501"), "query {q}");
    }
}

/// Writers and jobs become the caller the same way: a trigger on the attacker's table (run by
/// a writer or a job's worker for a superuser session that took the attacker's role, or that
/// called the attacker's SECURITY DEFINER function) cannot get back to the session user.
#[test]
fn writers_jobs_and_their_triggers_cannot_reach_the_session_users_rights() {
    let attacker = "pgi_sec_trigger";
    let mut db = TestDb::new("sec_trigger");
    role(&mut db.client, attacker, "LOGIN");
    db.client
        .batch_execute(&format!(
            "GRANT pg_read_server_files TO {attacker}; GRANT CREATE ON SCHEMA public TO {attacker};"
        ))
        .unwrap();
    let mut c = connect_as(&db, attacker);
    c.batch_execute(&format!(
        "CREATE TABLE public.t (id bigint, v text);
         CREATE TABLE public.attempts (who text, escalated boolean);
         CREATE FUNCTION public.t_trap() RETURNS trigger LANGUAGE plpgsql AS $f$
         DECLARE ok boolean := true;
         BEGIN
           BEGIN EXECUTE 'RESET ROLE'; EXCEPTION WHEN others THEN NULL; END;
           BEGIN EXECUTE 'SET SESSION AUTHORIZATION DEFAULT'; EXCEPTION WHEN others THEN NULL; END;
           BEGIN EXECUTE 'ALTER ROLE {attacker} SUPERUSER'; EXCEPTION WHEN others THEN ok := false; END;
           INSERT INTO public.attempts VALUES (current_user, ok);
           RETURN NEW;
         END $f$;
         CREATE TRIGGER trap BEFORE INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION public.t_trap();
         CREATE FUNCTION public.load_for_me(p text) RETURNS bigint LANGUAGE sql SECURITY DEFINER AS
           $f$ SELECT public.ingest_jsonl_async(p, 'public.t', force => true) $f$;"
    ))
    .unwrap();
    let dir = DataDir::new();
    let path = dir.write("t.jsonl", lines(40));
    db.client.batch_execute("SET statement_timeout = '60s'").unwrap();
    // a superuser session that took the attacker's role: writers
    db.client
        .batch_execute(&format!(
            "SET ROLE {attacker}; SELECT * FROM ingest_jsonl('{path}', 'public.t', writers => 2); RESET ROLE"
        ))
        .unwrap();
    // a superuser calling the attacker's SECURITY DEFINER function: a job
    let job: i64 = db.client.query_one("SELECT public.load_for_me($1)", &[&path]).unwrap().get(0);
    db.client.query("SELECT * FROM wait_job($1)", &[&job]).unwrap();
    let submitted_by: String =
        db.client.query_one("SELECT submitted_by::text FROM ingest.jobs WHERE job_id = $1", &[&job]).unwrap().get(0);
    assert_eq!(submitted_by, attacker);

    assert!(!is_superuser(&mut db.client, attacker));
    let attempts: Vec<(String, bool)> = db
        .client
        .query("SELECT who, escalated FROM attempts GROUP BY 1, 2", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(attempts, vec![(attacker.to_owned(), false)]);
    let n: i64 = db.client.query_one("SELECT count(*) FROM attempts", &[]).unwrap().get(0);
    assert_eq!(n, 80);
}

/// A NOLOGIN role (taken with SET ROLE) still gets its batches, writers and jobs run as itself.
#[test]
fn nologin_callers_still_work() {
    let caller = "pgi_sec_nologin";
    let mut db = TestDb::new("sec_nologin");
    role(&mut db.client, caller, "NOLOGIN");
    db.client
        .batch_execute(&format!(
            "GRANT pg_read_server_files TO {caller};
             CREATE TABLE t (id bigint, v text, who text DEFAULT current_user); GRANT INSERT, SELECT ON t TO {caller};
             SET statement_timeout = '60s'; SET ROLE {caller};"
        ))
        .unwrap();
    let dir = DataDir::new();
    let path = dir.write("t.jsonl", lines(30));
    let rows = db
        .client
        .query("SELECT status, error FROM run_batch(ARRAY['INSERT INTO t (id, v) VALUES (0, current_user)'])", &[])
        .unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "ok", "{:?}", rows[0].get::<_, Option<String>>(1));
    db.client.query("SELECT * FROM ingest_jsonl($1, 't', writers => 2)", &[&path]).unwrap();
    let job: i64 = db.client.query_one("SELECT ingest_jsonl_async($1, 't', force => true)", &[&path]).unwrap().get(0);
    db.client.query("SELECT * FROM wait_job($1)", &[&job]).unwrap();
    db.client.batch_execute("RESET ROLE").unwrap();
    let by: Vec<(String, i64)> = db
        .client
        .query("SELECT who, count(*) FROM t GROUP BY who", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(by, vec![(caller.to_owned(), 61)]);
}
