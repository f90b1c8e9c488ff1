"""The members service as a whole: its bounded contexts, composed.

Each context is a sub-package with its pure ``domain``, its use cases
(``service``), its rows (``tables``) and its presenters (``wire``). A
context is given the services of the contexts it needs and uses only their
public methods:

    persons ← households ← network
    persons ← sites
    persons, households ← roster
    persons, households ← life

(households asks network's :class:`~jsx_members.network.service.OpenPairings`
which households have an open pairing, and persons asks households'
:class:`~jsx_members.households.service.Memberships` which household a
person is in, so that the contexts build on each other without a cycle.)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jsx_members.adapters.regions import default_places
from jsx_members.households.service import HouseholdsService, Memberships
from jsx_members.life.domain import Places
from jsx_members.life.service import LifeEventsService
from jsx_members.network.service import NetworkService, OpenPairings
from jsx_members.persons.service import PersonsService
from jsx_members.roster.service import RosterService
from jsx_members.sites.service import SitesService
from jsxcore.pii import BlindIndex, FieldCipher
from jsxcore.plugins import PluginHost

SERVICE_NAME = "jsx.members.v1.MembersService"


class MembersService:
    """Every context of the members service over one database. ``on_commit``
    wakes the outbox relay; ``plugins`` answers the rule hooks (the pairing
    rule; none given: the built-in defaults); ``places`` says which region
    codes exist (default: the region registry when installed); ``today`` is
    injectable for tests."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        cipher: FieldCipher,
        blind_index: BlindIndex,
        *,
        on_commit: Callable[[], None] | None = None,
        plugins: PluginHost | None = None,
        places: Places | None = None,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.sessions = sessions
        self.persons = PersonsService(
            sessions, cipher, blind_index, households=Memberships(), notify=on_commit, today=today
        )
        self.households = HouseholdsService(sessions, self.persons, OpenPairings(), notify=on_commit, today=today)
        self.network = NetworkService(
            sessions, self.persons, self.households, plugins=plugins, notify=on_commit, today=today
        )
        self.sites = SitesService(sessions, self.persons, notify=on_commit, today=today)
        self.roster = RosterService(sessions, self.persons, self.households, notify=on_commit, today=today)
        self.life = LifeEventsService(
            sessions,
            self.persons,
            self.households,
            places=places if places is not None else default_places(),
            notify=on_commit,
            today=today,
        )


__all__ = ["SERVICE_NAME", "MembersService"]
