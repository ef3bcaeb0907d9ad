"""Send and read mail through graphgate with Python's standard library.

    python3 python_smtplib_imaplib.py

Defaults match `graphgate demo`. For your gateway set GRAPHGATE_HOST,
SMTP_PORT, IMAP_PORT, MAIL_USER, MAIL_PASSWORD (the local account, not a
Microsoft password), MAIL_TO, and CA_FILE: the certificate to trust, e.g.
graphgate's generated <data dir>/tls/cert.pem (see certs/README.md). The
certificate must name GRAPHGATE_HOST (the generated one names localhost and
127.0.0.1).

Both connections use STARTTLS before the password is sent; graphgate
requires TLS for clients that are not on the same host.
"""

import email.message
import email.utils
import imaplib
import os
import smtplib
import ssl

host = os.environ.get("GRAPHGATE_HOST", "127.0.0.1")
smtp_port = int(os.environ.get("SMTP_PORT", "2525"))
imap_port = int(os.environ.get("IMAP_PORT", "1143"))
user = os.environ.get("MAIL_USER", "alice@example.com")
password = os.environ.get("MAIL_PASSWORD", "alice")
to = os.environ.get("MAIL_TO", "bob@example.com")
ca_file = os.environ.get("CA_FILE")  # None: the system's trusted CAs

tls = ssl.create_default_context(cafile=ca_file)

# Send: STARTTLS, AUTH, one message. send_message raises
# smtplib.SMTPResponseException with graphgate's reason on a refusal
# (535 wrong password, 550 5.7.1 a From address the account may not use,
# 554 what Microsoft 365 refused).
message = email.message.EmailMessage()
message["From"] = user
message["To"] = to
message["Subject"] = "Hello from Python through graphgate"
message["Message-ID"] = email.utils.make_msgid()
message.set_content("Sent with smtplib, delivered by Microsoft Graph.\n")
with smtplib.SMTP(host, smtp_port, timeout=60) as smtp:
    smtp.starttls(context=tls)
    smtp.login(user, password)
    smtp.send_message(message)
print("sent", message["Message-ID"], "to", to)

# Read: STARTTLS, LOGIN, the newest five messages of the Inbox.
with imaplib.IMAP4(host, imap_port, timeout=60) as imap:
    imap.starttls(ssl_context=tls)
    imap.login(user, password)
    typ, folders = imap.list()
    print("folders:", ", ".join(f.decode().rsplit(' "/" ', 1)[-1] for f in folders))
    typ, data = imap.select("INBOX", readonly=True)
    count = int(data[0])
    print("INBOX:", count, "messages")
    if count:
        first = max(1, count - 4)
        typ, fetched = imap.fetch(f"{first}:{count}", "(UID BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])")
        for part in fetched:
            if isinstance(part, tuple):
                print(" ", part[1].decode(errors="replace").strip().replace("\r\n", " | "))
    imap.logout()
