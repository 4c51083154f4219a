# Mail server (stand-in for the paper's Microsoft Exchange load): Postfix
# receiving over SMTP (smtp-source, 4 parallel sessions, 4 KiB messages to
# 20 mailboxes) and delivering over LMTP to Dovecot's Maildirs, while a
# reader fetches new messages of every mailbox, marks them read and expunges
# old ones (doveadm), as mail clients would.
# Sourced by lib/build-image.sh (host; WL_PACKAGES, wl_prepare in a chroot)
# and by the guest init (wl_start, wl_load). See README.md.
WL_DESCRIPTION="Postfix (SMTP) + Dovecot (LMTP delivery, Maildir) + smtp-source, doveadm readers"
WL_PACKAGES="postfix dovecot-imapd dovecot-lmtpd"
WL_RAM_MB=512
WL_SECONDS=60
WL_USERS=20

wl_prepare() {
  for i in $(seq 1 $WL_USERS); do useradd -m -s /usr/sbin/nologin "user$i"; done
  echo ftsync-wl > /etc/mailname
  postconf -e myhostname=ftsync-wl mydomain=localdomain \
    'mydestination=ftsync-wl, localhost, localhost.localdomain' \
    inet_interfaces=loopback-only inet_protocols=ipv4 \
    'mailbox_transport=lmtp:unix:private/dovecot-lmtp' \
    maillog_file=/var/log/postfix.log smtpd_client_connection_count_limit=0 \
    default_process_limit=20 message_size_limit=1048576 \
    compatibility_level=3.6
  newaliases
  cat > /etc/dovecot/local.conf <<'CONF'
protocols = imap lmtp
mail_location = maildir:~/Maildir
log_path = /var/log/dovecot.log
ssl = no
disable_plaintext_auth = no
service lmtp {
  unix_listener /var/spool/postfix/private/dovecot-lmtp {
    mode = 0600
    user = postfix
    group = postfix
  }
}
protocol lmtp {
  auth_username_format = %n
}
CONF
  doveconf -n > /dev/null
}

wl_start() {
  mkdir -p /run/dovecot
  dovecot
  postfix start
  for i in $(seq 1 300); do
    [ -S /var/spool/postfix/private/dovecot-lmtp ] && postfix status >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "postfix/dovecot did not come up"
  return 1
}

wl_reader() {
  while :; do
    for i in $(seq 1 $WL_USERS); do
      doveadm fetch -u "user$i" text mailbox INBOX unseen > /dev/null 2>&1
      doveadm flags add -u "user$i" '\Seen' mailbox INBOX unseen 2>/dev/null
      doveadm expunge -u "user$i" mailbox INBOX seen savedbefore 20s 2>/dev/null
    done
  done
}

wl_load() {
  wl_reader &
  reader=$!
  rcpts=""
  for i in $(seq 1 $WL_USERS); do rcpts="$rcpts user$i@localhost"; done
  # smtp-source sends to one recipient per session: one sender per mailbox
  # group, each bounded by the load's duration.
  pids=""
  for s in 1 2 3 4; do
    ( while :; do
        for i in $(seq $s 4 $WL_USERS); do
          smtp-source -c -s 1 -m 20 -l 4096 -f bench@localhost -t "user$i@localhost" 127.0.0.1:25 > /dev/null 2>&1
        done
      done ) &
    pids="$pids $!"
  done
  sleep "$WL_SECONDS"
  # Stop the loops; their last smtp-source/doveadm children are left to end
  # on their own (waiting for them would run past the load's time).
  kill $pids $reader 2>/dev/null
  echo "delivered: $(grep -c 'status=sent' /var/log/postfix.log) messages"
  echo "mailboxes: $(du -sh /home | cut -f1) in /home"
  return 0
}
