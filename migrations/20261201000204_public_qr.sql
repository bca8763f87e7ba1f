-- Whether anyone may fetch the link's QR code at /{code}/qr (the owner always can, through
-- the API).
ALTER TABLE links ADD COLUMN public_qr BOOLEAN NOT NULL DEFAULT false;
