#!/usr/bin/env python3
"""SQL for a MariaDB/MySQL test database of real text, and its nightly changes.

Usage:
  mysql_data.py create SCALE [SEED]   schema + rows: SCALE posts, SCALE/10 users,
                                      2*SCALE comments (about 2.3 KB of dump per post)
  mysql_data.py night SEED SCALE      one night of changes to a database made by `create`:
                                      0.25% of the rows of every table updated, 0.1%
                                      inserted, 0.1% deleted (chosen with SEED)

The SQL goes to standard output, for `mariadb DB`. The text is real English: runs of
consecutive words from the plain-text files under /usr/share/common-licenses and
/usr/share/doc/*/copyright (a fixed built-in paragraph when none can be read), so it
compresses and deduplicates like application text, not like blanks or random bytes.
The schema has a view, a trigger, a procedure and a binary column (dumped with
--hex-blob), so a restore shows that those come back too.

`night` reads nothing from the database: it addresses rows by id ranges that `create`
made (ids 1..N per table) and leaves the ids it deletes or does not find alone (an
UPDATE or DELETE of a missing id changes nothing), so nights can be applied in a row.
"""

import glob
import random
import sys

FALLBACK = (
    "Permission is hereby granted free of charge to any person obtaining a copy of this "
    "software and associated documentation files to deal in the Software without "
    "restriction including without limitation the rights to use copy modify merge publish "
    "distribute sublicense and or sell copies of the Software and to permit persons to whom "
    "the Software is furnished to do so subject to the following conditions The above "
    "copyright notice and this permission notice shall be included in all copies or "
    "substantial portions of the Software"
)


def corpus():
    words = []
    paths = sorted(glob.glob("/usr/share/common-licenses/*"))
    paths += sorted(glob.glob("/usr/share/doc/*/copyright"))
    for p in paths:
        try:
            with open(p, encoding="utf-8", errors="replace") as f:
                words.extend(f.read().split())
        except OSError:
            continue
        if len(words) > 400_000:
            break
    if len(words) < 1000:
        words = FALLBACK.split() * 20
    return words


WORDS = corpus()


def text(rng, n_chars):
    """Real text of about n_chars characters: runs of 5-25 consecutive corpus words."""
    out = []
    size = 0
    while size < n_chars:
        i = rng.randrange(len(WORDS) - 30)
        run = " ".join(WORDS[i : i + rng.randint(5, 25)])
        out.append(run[:1].upper() + run[1:] + ".")
        size += len(run) + 2
    return " ".join(out)[:n_chars]


def q(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "''") + "'"


def ts(rng):
    return "'2026-%02d-%02d %02d:%02d:%02d'" % (
        rng.randint(1, 11),
        rng.randint(1, 28),
        rng.randint(0, 23),
        rng.randint(0, 59),
        rng.randint(0, 59),
    )


def user_row(rng, i):
    name = " ".join(w.strip(".,;:()<>\"'") for w in rng.sample(WORDS[:5000], 2))[:60]
    avatar = rng.randbytes(16).hex()
    return "(%d,%s,%s,X'%s',%s,%s)" % (
        i,
        q(name),
        q("user%d@example.org" % i),
        avatar,
        q(text(rng, rng.randint(80, 400))),
        ts(rng),
    )


def post_row(rng, i, users):
    return "(%d,%d,%s,%s,%s,%s)" % (
        i,
        rng.randint(1, users),
        q(text(rng, rng.randint(30, 120))),
        q(text(rng, rng.randint(300, 3000))),
        ts(rng),
        ts(rng),
    )


def comment_row(rng, i, posts, users):
    return "(%d,%d,%d,%s,%s)" % (
        i,
        rng.randint(1, posts),
        rng.randint(1, users),
        q(text(rng, rng.randint(40, 500))),
        ts(rng),
    )


SCHEMA = """
CREATE TABLE users (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(64) NOT NULL,
  email VARCHAR(128) NOT NULL,
  avatar VARBINARY(32) NOT NULL,
  bio TEXT NOT NULL,
  created_at DATETIME NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE posts (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  user_id INT NOT NULL,
  title VARCHAR(200) NOT NULL,
  body MEDIUMTEXT NOT NULL,
  created_at DATETIME NOT NULL,
  updated_at DATETIME NOT NULL,
  KEY (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE comments (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  post_id INT NOT NULL,
  user_id INT NOT NULL,
  body TEXT NOT NULL,
  created_at DATETIME NOT NULL,
  KEY (post_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE post_stats (
  post_id INT NOT NULL PRIMARY KEY,
  comments INT NOT NULL
) ENGINE=InnoDB;
CREATE VIEW user_posts AS
  SELECT u.id AS user_id, u.name, COUNT(p.id) AS posts
  FROM users u LEFT JOIN posts p ON p.user_id = u.id GROUP BY u.id, u.name;
CREATE TRIGGER comments_count AFTER INSERT ON comments FOR EACH ROW
  INSERT INTO post_stats VALUES (NEW.post_id, 1)
  ON DUPLICATE KEY UPDATE comments = comments + 1;
CREATE PROCEDURE posts_of(IN uid INT)
  SELECT id, title FROM posts WHERE user_id = uid ORDER BY id;
"""


def inserts(table, rows, batch=200):
    for k in range(0, len(rows), batch):
        print("INSERT INTO %s VALUES %s;" % (table, ",".join(rows[k : k + batch])))


def create(scale, seed):
    rng = random.Random(seed)
    users, posts, comments = max(scale // 10, 1), scale, 2 * scale
    print(SCHEMA)
    print("START TRANSACTION;")
    inserts("users", [user_row(rng, i) for i in range(1, users + 1)])
    inserts("posts", [post_row(rng, i, users) for i in range(1, posts + 1)])
    inserts("comments", [comment_row(rng, i, posts, users) for i in range(1, comments + 1)])
    print("COMMIT;")


def night(seed, scale):
    rng = random.Random(seed)
    users, posts, comments = max(scale // 10, 1), scale, 2 * scale
    # New ids go after every id an earlier night can have made.
    base = 1_000_000 + (seed % 1000) * 10_000
    print("START TRANSACTION;")
    for table, n in (("users", users), ("posts", posts), ("comments", comments)):
        upd = max(1, n * 25 // 10_000)
        ins = max(1, n // 1000)
        for i in rng.sample(range(1, n + 1), upd):
            col = "bio" if table == "users" else "body"
            print(
                "UPDATE %s SET %s = CONCAT(LEFT(%s, %d), %s, SUBSTRING(%s, %d)) WHERE id = %d;"
                % (table, col, col, rng.randint(10, 200), q(" " + text(rng, rng.randint(20, 80))), col, rng.randint(201, 300), i)
            )
        for i in rng.sample(range(1, n + 1), ins):
            print("DELETE FROM %s WHERE id = %d;" % (table, i))
        if table == "users":
            rows = [user_row(rng, base + k) for k in range(ins)]
        elif table == "posts":
            rows = [post_row(rng, base + k, users) for k in range(ins)]
        else:
            rows = [comment_row(rng, base + k, posts, users) for k in range(ins)]
        inserts(table, rows)
    print("COMMIT;")


def main(argv):
    if len(argv) >= 3 and argv[1] == "create":
        create(int(argv[2]), int(argv[3]) if len(argv) > 3 else 1)
    elif len(argv) >= 3 and argv[1] == "night":
        night(int(argv[2]), int(argv[3]) if len(argv) > 3 else 4000)
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
