"""One module per channel API simulator (`ChannelApp` subclasses) plus the shared HTTP and GraphQL plumbing."""
