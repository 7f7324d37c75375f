#!/usr/bin/perl
# SPDX-License-Identifier: GPL-3.0-or-later
# 11-migrate.t - `rateguard migrate`: a new database gets PolicydRateGuard's
# tables and the schema version; a second run changes nothing; an existing
# PolicydRateGuard database (an early version without totals) is upgraded in
# place with its rows, counters and timestamps kept.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use RG qw(run_rateguard fresh_database dbh write_config);

sub columns {
    my ($h, $table) = @_;
    return join ',', map { $_->[0] } @{ $h->selectall_arrayref(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() "
      . "AND table_name = ? ORDER BY ordinal_position", undef, $table) };
}

sub indexes {
    my ($h, $table) = @_;
    return join ',', map { $_->[0] } @{ $h->selectall_arrayref(
        "SELECT DISTINCT index_name FROM information_schema.statistics WHERE table_schema = DATABASE() "
      . "AND table_name = ? ORDER BY index_name", undef, $table) };
}

my $ratelimit_cols = 'id,sender,quota,quota_reset,quota_locked,msg_quota,rcpt_quota,block_action,'
                   . 'msg_counter,rcpt_counter,msg_total,rcpt_total,reset_at,notified,created_at,updated_at';
my $message_cols = 'id,ratelimit_id,sender,rcpt_count,blocked,msgid,from_addr,to_addr,cc_addr,'
                 . 'bcc_addr,subject,client_address,client_name,created_at';

# --- a new database ---
my $db = fresh_database('migrate_new');
my $c = write_config(database => $db);
my ($rc, $out, $err) = run_rateguard('-c', $c->{path}, 'migrate');
is($rc, 0, 'migrate on an empty database: exit 0') or diag $err;
like($out, qr/^migrate: \d+ migrations? applied, schema version (\d+)\n\z/, 'migrate prints a summary');
my ($version) = $out =~ /schema version (\d+)/;
my $h = dbh($db);
is(columns($h, 'ratelimits'), $ratelimit_cols, 'ratelimits has PolicydRateGuard\'s columns');
is(columns($h, 'messages'), $message_cols, 'messages has PolicydRateGuard\'s columns');
is(columns($h, 'rateguard_progress'), 'writer,epoch,last_seq,updated_at', 'rateguard_progress table');
is_deeply($h->selectcol_arrayref('SELECT name FROM rateguard_schema ORDER BY version'),
          ['001_ratelimits_and_messages', '002_long_addresses', '003_resets_and_progress', '004_separate_quotas', '005_domain_quotas', '006_domain_pools', '007_notified', '008_login_signals'], 'migrations recorded');
is(indexes($h, 'ratelimits'), 'PRIMARY,ratelimits_sender_unique', 'ratelimits indexes');
is(indexes($h, 'messages'), 'messages_created_at_index,messages_ratelimit_id_foreign,PRIMARY',
   'messages indexes (created_at for the purge)');
my ($max) = $h->selectrow_array('SELECT MAX(version) FROM rateguard_schema');
is($max, $version, 'rateguard_schema records the version');
my ($n_versions) = $h->selectrow_array('SELECT COUNT(*) FROM rateguard_schema');

($rc, $out, $err) = run_rateguard('-c', $c->{path}, 'migrate');
is($rc, 0, 'second migrate: exit 0');
is($out, "migrate: 0 migrations applied, schema version $version\n", 'second migrate applies nothing');
my ($n_after) = $h->selectrow_array('SELECT COUNT(*) FROM rateguard_schema');
is($n_after, $n_versions, 'no duplicate schema rows');

# The sender key is case-insensitive in the database, as in the cache.
$h->do("INSERT INTO ratelimits (sender) VALUES ('Alice\@Example.org')");
ok(!eval { $h->do("INSERT INTO ratelimits (sender) VALUES ('alice\@example.org')"); 1 },
   'sender unique case-insensitively');
$h->disconnect;

# --- an existing PolicydRateGuard database (schema of 2023-07-05) ---
$db = fresh_database('migrate_prg');
$h = dbh($db);
$h->do(<<'SQL');
CREATE TABLE `ratelimits` (
  `id` bigint unsigned NOT NULL AUTO_INCREMENT,
  `sender` varchar(255) NOT NULL,
  `quota` int unsigned NOT NULL DEFAULT '1000',
  `quota_reset` int unsigned NOT NULL DEFAULT '1000',
  `quota_locked` tinyint(1) NOT NULL DEFAULT '0',
  `msg_counter` int unsigned NOT NULL DEFAULT '0',
  `rcpt_counter` int unsigned NOT NULL DEFAULT '0',
  `created_at` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
  `updated_at` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_sender` (`sender`)
)
SQL
$h->do(<<'SQL');
CREATE TABLE `messages` (
  `id` bigint unsigned NOT NULL AUTO_INCREMENT,
  `ratelimit_id` bigint unsigned DEFAULT NULL,
  `sender` varchar(255) NOT NULL,
  `rcpt_count` int NOT NULL,
  `blocked` tinyint(1) NOT NULL,
  `msgid` varchar(255) DEFAULT NULL,
  `from_addr` varchar(255) DEFAULT NULL,
  `to_addr` text DEFAULT NULL,
  `cc_addr` text DEFAULT NULL,
  `bcc_addr` text DEFAULT NULL,
  `subject` varchar(255) NOT NULL DEFAULT '',
  `client_address` varchar(45) NULL DEFAULT NULL,
  `client_name` varchar(255) NULL DEFAULT NULL,
  `created_at` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (`id`),
  KEY `messages_ratelimit_id_foreign` (`ratelimit_id`),
  CONSTRAINT `messages_ratelimit_id_foreign` FOREIGN KEY (`ratelimit_id`) REFERENCES `ratelimits` (`id`) ON DELETE SET NULL ON UPDATE CASCADE
)
SQL
$h->do(q{INSERT INTO ratelimits (sender, quota, quota_reset, quota_locked, msg_counter, rcpt_counter, created_at, updated_at)
         VALUES ('a@example.com', 100, 5, 1, 4, 7, '2024-01-02 03:04:05', '2024-02-03 04:05:06'),
                ('b@example.com', 3000, 1000, 0, 0, 0, '2024-01-02 03:04:05', '2024-02-03 04:05:06')});
$h->do(q{INSERT INTO messages (ratelimit_id, sender, rcpt_count, blocked, msgid, created_at)
         VALUES (1, 'a@example.com', 3, 0, 'ABC123', '2024-02-03 04:05:06')});

$c = write_config(database => $db);
($rc, $out, $err) = run_rateguard('-c', $c->{path}, 'migrate');
is($rc, 0, 'migrate over PolicydRateGuard: exit 0') or diag $err;
is(columns($h, 'ratelimits'), $ratelimit_cols, 'totals, reset_at and notified added to ratelimits');
is(columns($h, 'messages'), $message_cols, 'messages columns kept');
like(indexes($h, 'messages'), qr/messages_created_at_index/, 'created_at index added');
is_deeply($h->selectall_arrayref(
    'SELECT sender, quota, quota_reset, quota_locked, msg_counter, rcpt_counter, msg_total, rcpt_total, '
  . 'created_at, updated_at FROM ratelimits ORDER BY id'),
    [['a@example.com', 100, 5, 1, 4, 7, 4, 7, '2024-01-02 03:04:05', '2024-02-03 04:05:06'],
     ['b@example.com', 3000, 1000, 0, 0, 0, 0, 0, '2024-01-02 03:04:05', '2024-02-03 04:05:06']],
    'rows kept, totals start at the counters, updated_at untouched');
is_deeply($h->selectall_arrayref('SELECT sender, msgid FROM messages'), [['a@example.com', 'ABC123']],
          'messages kept');
($rc, $out) = run_rateguard('-c', $c->{path}, 'migrate');
is($out, "migrate: 0 migrations applied, schema version $version\n", 'second run over the upgraded database: nothing');

# --- no database server reachable: runtime error, exit 6 ---
my $bad = write_config(database => $db, sections => { database => qq{socket = "/nonexistent/mysqld.sock"\n} });
($rc, $out, $err) = run_rateguard('-c', $bad->{path}, 'migrate');
is($rc, 6, 'database unreachable: exit 6');
like($err, qr/migrate: connect to database 'rg_migrate_prg' as 'rateguard' at \/nonexistent\/mysqld\.sock: /,
     'database unreachable: message names database, user and socket');
unlike($err, qr/\Q$ENV{RG_DB_PASSWORD}\E/, 'password not in the message');

# --- a daemon over an older schema refuses to start, saying what to do ---
$h->do('DELETE FROM rateguard_schema WHERE version >= 7');
my $old = write_config(database => $db, name => 'oldschema');
my $pid = fork // die;
if ($pid == 0) {
    open STDOUT, '>', "$old->{log}.stdout";
    open STDERR, '>&', \*STDOUT;
    exec(RG::rateguard(), '-c', $old->{path}, '-f', 'run') or die;
}
waitpid($pid, 0);
is($? >> 8, 6, 'daemon over schema version 6: exit 6');
like(RG::slurp($old->{log}), qr/the database schema is at version 6, this rateguard needs $version: run `rateguard migrate` first/,
     'the reason is logged');
($rc, $out) = run_rateguard('-c', $old->{path}, 'migrate');
is($out, sprintf("migrate: %d migrations applied, schema version %d\n", $version - 6, $version),
   'migrate brings it up to date (007 and later again: idempotent)');

$h->disconnect;
done_testing();
