-- Password-protected links: the argon2id PHC string of the password; NULL when open.
ALTER TABLE links ADD COLUMN password_hash TEXT;
