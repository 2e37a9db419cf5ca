"""One answer to "is the booth's link working?" from two witnesses.

The hub link knows whether the hub's WebSocket is up; the call engine knows
whether media still arrives in a call. Either can fail while the other holds
(UDP blocked while the WebSocket lives; the WebSocket dropped while media
flows peer to peer). The visit wants one fact, so each witness reports here
and the visit hears :class:`~kiosk.session.NetworkLost` when the first goes
down and :class:`~kiosk.session.NetworkRestored` only when both are up again.
Every other event passes straight through.
"""

from __future__ import annotations

from collections.abc import Callable

from kiosk import session

EventSink = Callable[[session.Event], None]


class LinkHealth:
    """Merges the hub's and the media's up/down reports into the visit's network events."""

    def __init__(self, post: EventSink) -> None:
        self._post = post
        self.hub_up = True
        self.media_up = True

    @property
    def up(self) -> bool:
        return self.hub_up and self.media_up

    def _set(self, hub: bool | None = None, media: bool | None = None) -> None:
        before = self.up
        if hub is not None:
            self.hub_up = hub
        if media is not None:
            self.media_up = media
        if before and not self.up:
            self._post(session.NetworkLost())
        elif not before and self.up:
            self._post(session.NetworkRestored())

    def from_hub(self, event: session.Event) -> None:
        """The hub link's sink."""
        if isinstance(event, session.NetworkLost):
            self._set(hub=False)
        elif isinstance(event, session.NetworkRestored):
            self._set(hub=True)
        else:
            self._post(event)

    def from_media(self, event: session.Event) -> None:
        """The call engine's sink."""
        if isinstance(event, session.NetworkLost):
            self._set(media=False)
        elif isinstance(event, session.NetworkRestored):
            self._set(media=True)
        else:
            self._post(event)
            if isinstance(event, session.CallEnded):
                self._set(media=True)  # no call, no media to miss
