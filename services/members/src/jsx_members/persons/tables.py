"""The persons table. Personal data never sits in plaintext: a 身份证 number
is stored as AES-GCM ciphertext (bound to its row) plus a keyed blind index
(HMAC) that is unique, so duplicates are refused by the database and lookups
never scan plaintext; phones likewise. The masked form (4312**********1234)
is kept for messages."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, DateTime, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from jsx_members.adapters.db import Base, new_id, utcnow


class PersonRow(Base):
    __tablename__ = "persons"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(30))
    id_cipher: Mapped[bytes] = mapped_column(LargeBinary)
    id_bidx: Mapped[str] = mapped_column(String(64), unique=True)
    id_masked: Mapped[str] = mapped_column(String(18))
    birth_date: Mapped[date] = mapped_column(Date)
    sex: Mapped[str] = mapped_column(String(1))
    phone_cipher: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone_bidx: Mapped[str | None] = mapped_column(String(64), index=True)
    card_cipher: Mapped[bytes | None] = mapped_column(LargeBinary)
    village: Mapped[str] = mapped_column(String(12), index=True)
    hukou: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    death_date: Mapped[date | None] = mapped_column(Date)
    # 户籍 moves (MovePerson): the latest move's date, and where to when it left the province.
    moved_on: Mapped[date | None] = mapped_column(Date)
    moved_to: Mapped[str | None] = mapped_column(String(12))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


__all__ = ["PersonRow"]
