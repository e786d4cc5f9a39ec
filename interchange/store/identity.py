"""Who a row of a dossier names: each PersonRef resolved to one person, stored or new, with the
merges and conflicts that brings (the rules of SPEC §6, described in interchange.store.persons,
which loads the persons and writes what this decides)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from interchange.records.model import PersonRef


class Working:
    """A person while a dossier's rows are resolved: loaded, or new (id None until inserted)."""

    def __init__(self, row=None, **values):
        src = row._mapping if row is not None else values
        self.id: int | None = src.get("id")
        self.personal_id: str | None = src.get("personal_id")
        self.si_code: str | None = src.get("si_code")
        self.name: str | None = src.get("name")
        self.birth_date: date | None = src.get("birth_date")
        self.gender: int | None = src.get("gender")
        self.nationality: str | None = src.get("nationality")
        self.data_rank: int = src.get("data_rank", 0)
        self.data_at: datetime = src["data_at"]
        self.merged_into: Working | None = None
        self.dirty = False

    @property
    def final(self) -> Working:
        p = self
        while p.merged_into is not None:
            p = p.merged_into
        return p

    def offer(self, ref: PersonRef, rank: int, at: datetime) -> None:
        """Take the personal data of a row: fill what is unknown; replace what differs when the
        row's form outranks (or equals and is not older than) what set the data."""
        newer = (rank, at) >= (self.data_rank, self.data_at)
        changed = False
        for name in ("name", "birth_date", "gender", "nationality"):
            value = getattr(ref, name)
            if value is None or value == "":
                continue
            current = getattr(self, name)
            if current is None or (newer and current != value):
                setattr(self, name, value)
                changed = True
        # The source is moved on only when the data changes: a monthly dossier repeating what is
        # known rewrites no person row.
        if changed or rank > self.data_rank:
            self.dirty = True
            if newer:
                self.data_rank, self.data_at = rank, at

    def values(self) -> dict:
        return {
            "personal_id": self.personal_id,
            "si_code": self.si_code,
            "name": self.name,
            "birth_date": self.birth_date,
            "gender": self.gender,
            "nationality": self.nationality,
            "data_rank": self.data_rank,
            "data_at": self.data_at,
        }


class Resolver:
    """Each PersonRef of a dossier to one person, with the merges and conflicts that brings."""

    def __init__(self, loaded: Iterable[Working]):
        self.by_pid: dict[str, Working] = {}
        self.by_si: dict[str, Working] = {}
        self.new: list[Working] = []
        self.merges: list[tuple[Working, Working]] = []  # (kept, merged), both stored before
        self.conflicts: list[str] = []
        for p in loaded:
            self._index(p)

    def _index(self, p: Working) -> None:
        if p.personal_id:
            self.by_pid[p.personal_id] = p
        if p.si_code:
            self.by_si[p.si_code] = p

    def resolve(self, ref: PersonRef, where: str, rank: int, at: datetime) -> Working:
        person = self._find(ref, where, at)
        person.offer(ref, rank, at)
        return person

    def _find(self, ref: PersonRef, where: str, at: datetime) -> Working:
        pid, si = ref.personal_id or None, ref.si_code or None
        by_pid = self.by_pid.get(pid) if pid else None
        by_si = self.by_si.get(si) if si else None
        if by_pid is not None and by_si is not None and by_pid is not by_si:
            if by_si.personal_id is None and by_pid.si_code is None:
                return self._merge(by_pid, by_si)
            self.conflicts.append(
                f"{where}: SI code {si} belongs to another person (personal ID {by_si.personal_id}) "
                f"than personal ID {pid} (SI code {by_pid.si_code}); recorded under personal ID {pid}"
            )
            return by_pid
        if by_pid is not None:
            if si and by_pid.si_code is None:
                by_pid.si_code, by_pid.dirty = si, True
                self.by_si[si] = by_pid
            elif si and by_pid.si_code != si:
                self.conflicts.append(
                    f"{where}: personal ID {pid} is known with SI code {by_pid.si_code}, not {si}; "
                    f"recorded under personal ID {pid}"
                )
            return by_pid
        if by_si is not None:
            if pid and by_si.personal_id is None:
                by_si.personal_id, by_si.dirty = pid, True
                self.by_pid[pid] = by_si
                return by_si
            if not pid:
                return by_si
            # The SI code is another person's: the personal ID is the key, so this is a new person.
            self.conflicts.append(
                f"{where}: SI code {si} belongs to personal ID {by_si.personal_id}, not {pid}; "
                f"recorded under personal ID {pid}"
            )
            si = None
        person = Working(personal_id=pid, si_code=si, name=ref.name, data_rank=-1, data_at=at)
        self.new.append(person)
        self._index(person)
        return person

    def _merge(self, by_pid: Working, by_si: Working) -> Working:
        # Keep a stored row when only one of them is stored, so that no records move needlessly.
        if by_pid.id is None and by_si.id is not None:
            kept, gone = by_si, by_pid
        else:
            kept, gone = by_pid, by_si
        newer, older = (gone, kept) if (gone.data_rank, gone.data_at) > (kept.data_rank, kept.data_at) else (kept, gone)
        for name in ("name", "birth_date", "gender", "nationality"):
            setattr(kept, name, getattr(newer, name) if getattr(newer, name) is not None else getattr(older, name))
        kept.data_rank, kept.data_at = newer.data_rank, newer.data_at
        kept.personal_id = kept.personal_id or gone.personal_id
        kept.si_code = kept.si_code or gone.si_code
        kept.dirty = True
        gone.merged_into = kept
        if gone.id is None:
            self.new.remove(gone)
        else:
            self.merges.append((kept, gone))
        self._index(kept)
        return kept
