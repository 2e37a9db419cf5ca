"""The booth's side of a visit over the network: the hub link and, later, the WebRTC call."""
