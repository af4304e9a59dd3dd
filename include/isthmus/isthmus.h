/* Public API of libisthmus (the initiator library). */
