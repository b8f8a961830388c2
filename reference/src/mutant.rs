//! The reference provider's mutants: each one a single deliberate deviation from one SPEC.md requirement.
//!
//! A mutant is checked with `mutant == Mutant::X` at the exact point where the correct client
//! would do otherwise; there is no copied code path. The harness must tell every mutant from
//! the reference (a scenario that no mutant fails checks nothing).

macro_rules! mutants {
    ($($variant:ident => ($name:literal, $req:literal, $desc:literal),)+) => {
        /// One deliberate deviation, or [`Mutant::None`] for the correct reference client.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Mutant {
            /// No mutant: the reference behaviour.
            None,
            $($variant,)+
        }

        impl Mutant {
            /// Every mutant (without [`Mutant::None`]), in `--list-mutants` order.
            pub const ALL: &'static [Mutant] = &[$(Mutant::$variant,)+];

            /// The name given to `--mutant`.
            pub fn name(self) -> &'static str {
                match self {
                    Mutant::None => "none",
                    $(Mutant::$variant => $name,)+
                }
            }

            /// The SPEC.md requirement the mutant breaks.
            pub fn requirement(self) -> &'static str {
                match self {
                    Mutant::None => "",
                    $(Mutant::$variant => $req,)+
                }
            }

            /// What the mutant does differently.
            pub fn description(self) -> &'static str {
                match self {
                    Mutant::None => "the reference behaviour",
                    $(Mutant::$variant => $desc,)+
                }
            }
        }
    };
}

mutants! {
    AcceptDoctype => ("accept-doctype", "STREAM-28",
        "strips DOCTYPE declarations from the server's bytes instead of refusing them with restricted-xml"),
    SkipRestrictedXmlForComments => ("skip-restricted-xml-for-comments", "STREAM-28",
        "strips XML comments from the server's bytes instead of refusing them with restricted-xml"),
    SendComment => ("send-comment", "STREAM-29",
        "writes an XML comment right after its stream header"),
    RestrictedAsBadFormat => ("restricted-as-bad-format", "STREAM-41",
        "refuses restricted XML with the condition bad-format instead of restricted-xml"),
    SlowCloseAfterStreamError => ("slow-close-after-stream-error", "STREAM-44",
        "closes 6 s after receiving a stream error instead of at once (within the 5 s bound)"),
    NamespaceErrorAsBadFormat => ("namespace-error-as-bad-format", "STREAM-46",
        "refuses a stream element outside the streams namespace with bad-format, not invalid-namespace"),
    DuplicateAttributeOutput => ("duplicate-attribute-output", "STREAM-42",
        "writes its initial presence with a duplicated attribute (not well-formed XML)"),
    WrongStreamNs => ("wrong-stream-ns", "STREAM-13",
        "opens its stream with the content namespace jabber:server"),
    SkipHeaderCheck => ("skip-header-check", "STREAM-15",
        "accepts a response header with content namespace jabber:server or a version other than 1.x"),
    SilentHandshakeFailure => ("silent-handshake-failure", "STREAM-7",
        "on a failed Noise handshake neither reports it nor gives up: it waits forever"),
    NoKeyPin => ("no-key-pin", "STREAM-6",
        "accepts any Noise server static key instead of the pinned one"),
    TlsAcceptAnyCert => ("tls-accept-any-cert", "STREAM-11",
        "does not verify the server certificate chain or name"),
    NoSni => ("no-sni", "STREAM-10",
        "sends no server name (SNI) in its TLS ClientHello"),
    NoAlpn => ("no-alpn", "STREAM-10",
        "offers no ALPN protocol in its TLS ClientHello"),
    AllowTls12 => ("allow-tls12", "STREAM-12",
        "lets the server negotiate TLS 1.2"),
    PlainWithoutOffer => ("plain-without-offer", "STREAM-19",
        "sends SASL PLAIN credentials even when the server does not offer PLAIN"),
    ContinueAfterSaslFailure => ("continue-after-sasl-failure", "STREAM-21",
        "sends a bind request after a SASL failure before closing"),
    PresenceBeforeBind => ("presence-before-bind", "STREAM-22",
        "sends its initial presence before requesting resource binding"),
    StaleResourceFrom => ("stale-resource-from", "STREAM-23",
        "stamps from with the resource it proposed, not the JID the server bound"),
    LingerAfterStreamError => ("linger-after-stream-error", "STREAM-24",
        "keeps the TCP connection open after sending a stream error"),
    IgnoreStreamError => ("ignore-stream-error", "STREAM-26",
        "keeps the session open after receiving a stream error (no closing tag, no close)"),
    PlainTcpStream => ("plain-tcp-stream", "STREAM-1",
        "writes its stream header on the bare TCP connection instead of starting the Noise handshake"),
    WrongIntroVersion => ("wrong-intro-version", "STREAM-3",
        "writes the Noise intro with minor version 2 (0x47 0x43 0x00 0x02) instead of 0x01"),
    StreamPrefixOnly => ("stream-prefix-only", "STREAM-16",
        "recognises the streams namespace only under the prefix stream: a server header with another prefix is refused"),
    ZeroLengthFrameSent => ("zero-length-frame-sent", "STREAM-5",
        "writes a zero-length Noise frame before its first stream header"),
    IgnoreZeroLengthFrame => ("ignore-zero-length-frame", "STREAM-5",
        "skips a zero-length Noise frame from the server instead of closing the connection"),
    SkipUndecryptableFrames => ("skip-undecryptable-frames", "STREAM-8",
        "skips a Noise transport frame that fails to decrypt instead of closing the connection"),
    FrameLocalUtf8 => ("frame-local-utf8", "STREAM-9",
        "decodes each Noise frame's plaintext as UTF-8 on its own, so a character split across frames is lost"),
    AuthBeforeFeatures => ("auth-before-features", "STREAM-17",
        "sends <auth> as soon as the server's stream header arrives, before <stream:features>"),
    AuthzidIsAccount => ("authzid-is-account", "STREAM-18",
        "puts the account in the SASL PLAIN authorization identity instead of leaving it empty"),
    NoStreamRestart => ("no-stream-restart", "STREAM-20",
        "after SASL success waits for new features without sending a new stream header"),
    StreamNsByPrefix => ("stream-ns-by-prefix", "STREAM-45",
        "takes any stream:stream element for the stream, whatever namespace its prefix is bound to"),
    MalformedAsBadFormat => ("malformed-as-bad-format", "STREAM-30",
        "refuses XML that is not well-formed with bad-format instead of not-well-formed"),
    NoCloseReply => ("no-close-reply", "STREAM-27",
        "does not answer the server's </stream:stream> and keeps the connection open"),
    TightStanzaLimit => ("tight-stanza-limit", "STREAM-31",
        "refuses stanzas over 128 KiB, below the 256 KiB every receiver must accept"),
    LaxStanzaLimit => ("lax-stanza-limit", "STREAM-32",
        "raises its stanza and text limits to 64 MiB and its depth limit to 100,000"),
    BelowFloors => ("below-floors", "STREAM-31",
        "refuses input exactly at each STREAM-31 floor: every size limit is one below its floor"),
    AboveCeilings => ("above-ceilings", "STREAM-32",
        "accepts input one above each STREAM-32 ceiling: every size limit is one above its ceiling"),
    CrashOnDeepNesting => ("crash-on-deep-nesting", "STREAM-31",
        "aborts (the process dies) on a stanza nested 20 levels deep or more, below the 32 every receiver must accept"),
    HangOnLongAttribute => ("hang-on-long-attribute", "STREAM-31",
        "stops reading and answering for good on an attribute value of 4 KiB or more, below the 8 KiB every receiver must accept"),
    WhitespaceIsError => ("whitespace-is-error", "STREAM-33",
        "treats a whitespace-only keepalive as malformed input"),
    RestrictedFirst => ("restricted-first", "STREAM-25",
        "refuses restricted XML found anywhere in a chunk before an earlier malformed tag"),
    ChatstatesInDisco => ("chatstates-in-disco", "STANZA-8",
        "lists http://jabber.org/protocol/chatstates in disco#info without declaring chatstates"),
    ErrorTypeUnknown => ("error-type-unknown", "STANZA-10",
        "answers an iq in an unknown namespace with an <error/> of type fatal"),
    ReplyToMessageError => ("reply-to-message-error", "STANZA-22",
        "answers a message of type error with a chat message telling its sender it failed"),
    PayloadInMessage1 => ("payload-in-message-1", "STREAM-2",
        "sends Noise handshake message 1 with a one-byte payload (33 bytes, not 32)"),
    PresenceBeforeRebind => ("presence-before-rebind", "STREAM-36",
        "on a reconnect, sends its presence before the new stream's resource binding"),
    EncodingAsNotWellFormed => ("encoding-as-not-well-formed", "STREAM-14",
        "refuses an XML declaration naming another encoding with not-well-formed, not unsupported-encoding"),
    TruncatedFrameSent => ("truncated-frame-sent", "STREAM-4",
        "sends its initial presence in a Noise frame cut shorter than the transport message"),
    NoKeepalive => ("no-keepalive", "STREAM-35",
        "never sends a keepalive on an idle stream, whatever idle limit the gatekeeper announced"),
    IdleCloseWithoutError => ("idle-close-without-error", "STREAM-48",
        "closes a stream silent for its idle limit without the connection-timeout stream error"),
    EarlyIdleClose => ("early-idle-close", "STREAM-43",
        "closes a stream with connection-timeout after a quarter of the idle limit without traffic"),
    ReconnectFlood => ("reconnect-flood", "STREAM-37",
        "under keep_connected, retries every 200 ms however many attempts failed"),
    ConstantBackoff => ("constant-backoff", "STREAM-38",
        "under keep_connected, waits a fixed 1.1 s between attempts instead of doubling the delay"),
    NoBackoffReset => ("no-backoff-reset", "STREAM-38",
        "under keep_connected, keeps growing the delay after a session that reached binding"),
    AcceptUnknownStanza => ("accept-unknown-stanza", "STANZA-1",
        "silently ignores top-level elements other than message, presence and iq"),
    DropIqId => ("drop-iq-id", "STANZA-2",
        "answers an iq that has no id with an iq that has no id"),
    DoubleAnswer => ("double-answer", "STANZA-3",
        "answers every ping twice"),
    NoBadRequest => ("no-bad-request", "STANZA-4",
        "answers a get/set with zero or several children with service-unavailable instead of bad-request"),
    AnswerResult => ("answer-result", "STANZA-5",
        "answers an iq of type result or error with an iq error"),
    SilentUnknownIq => ("silent-unknown-iq", "STANZA-6",
        "does not answer a get/set whose payload namespace it does not implement"),
    PingError => ("ping-error", "STANZA-7",
        "answers a ping with service-unavailable"),
    ErrorOnError => ("error-on-error", "STANZA-9",
        "answers a message or presence of type error with an error of the same kind"),
    ReceiptWithoutDelivery => ("receipt-without-delivery", "STANZA-14",
        "acknowledges a receipt request for a message whose content it never surfaced"),
    RejectUnknownMessageType => ("reject-unknown-message-type", "STANZA-23",
        "answers a message whose type it does not know with a bad-request error"),
    ForgedFrom => ("forged-from", "STANZA-20",
        "puts from='admin@DOMAIN' on every stanza it sends after binding"),
    ErrorOnUnknownChild => ("error-on-unknown-child", "STANZA-21",
        "answers a message carrying an unknown extension element with feature-not-implemented"),
    DiscoWithoutPing => ("disco-without-ping", "STANZA-8",
        "leaves urn:xmpp:ping out of its disco#info features, although it answers pings"),
    NoInitialPresence => ("no-initial-presence", "STANZA-18",
        "sends no initial presence after binding"),
    StatusInPresence => ("status-in-presence", "STANZA-19",
        "puts its account (the user's phone number) in a <status/> of its initial presence"),
    HeadlineNoticeForGroupchat => ("headline-notice-for-groupchat", "STANZA-24",
        "answers a groupchat message with a headline message saying group chats are not supported"),
    ErrorOnChatState => ("error-on-chat-state", "STANZA-27",
        "answers a standalone chat state notification with feature-not-implemented"),
    KeepConsumedPrekey => ("keep-consumed-prekey", "E2EE-8",
        "keeps a one-time prekey after a PreKeySignalMessage used it, so a second one reusing it is surfaced"),
    SkipBundleVerification => ("skip-bundle-verification", "E2EE-10",
        "encrypts to a device whose bundle does not verify (a session with stand-in keys)"),
    AcceptReplays => ("accept-replays", "E2EE-22",
        "surfaces a message again when the same Signal message is delivered again"),
    SilentIdentityChange => ("silent-identity-change", "E2EE-11",
        "accepts a peer device's changed identity key without emitting identity_changed"),
    FallbackBody => ("fallback-body", "E2EE-19",
        "puts a plaintext fallback <body/> beside the envelope of every message it sends"),
    SurfacePlaintext => ("surface-plaintext", "E2EE-31",
        "surfaces the <body/> of a message that carries no envelope as message_received"),
    OneDeviceOnly => ("one-device-only", "E2EE-14",
        "encrypts for only the first device of the recipient's device list"),
    FixedPayloadKey => ("fixed-payload-key", "E2EE-18",
        "encrypts every message under one payload key and IV drawn at start-up"),
    ReceiptForUndecryptable => ("receipt-for-undecryptable", "STANZA-14",
        "acknowledges a receipt request on an envelope it could not decrypt"),
    NoReceipts => ("no-receipts", "STANZA-13",
        "lists urn:xmpp:receipts in disco#info but never sends a receipt"),
    PrekeyFlagAlways => ("prekey-flag-always", "E2EE-16",
        "marks every <key/> prekey='true', SignalMessages included"),
    FewPrekeys => ("few-prekeys", "E2EE-5",
        "publishes 99 one-time prekeys instead of at least 100"),
    IgnorePrekeysLow => ("ignore-prekeys-low", "E2EE-6",
        "does not republish its bundle when the gatekeeper says its prekeys run low"),
    IgnoreGcmTag => ("ignore-gcm-tag", "E2EE-17",
        "surfaces the text of a payload whose AES-GCM tag does not verify"),
    RefuseLegacyIv => ("refuse-legacy-iv", "E2EE-17",
        "refuses envelopes with a 16-byte IV, which older OMEMO senders use"),
    InOrderOnly => ("in-order-only", "E2EE-23",
        "refuses a message whose chain counter is below one it already saw (no skipped message keys)"),
    HaltAfterDecryptFailure => ("halt-after-decrypt-failure", "E2EE-21",
        "surfaces nothing more once a message failed to decrypt"),
    SurfaceKeyTransport => ("surface-key-transport", "E2EE-26",
        "surfaces a key transport element (no payload) as an empty message"),
    TrimText => ("trim-text", "E2EE-25",
        "surfaces decrypted text with leading and trailing whitespace trimmed"),
    RefuseIncomingSessions => ("refuse-incoming-sessions", "E2EE-30",
        "refuses PreKeySignalMessages from devices it has no session with (accepts only sessions it set up)"),
    BodyOverEnvelope => ("body-over-envelope", "E2EE-31",
        "surfaces the plaintext <body/> instead of the decrypted text when a message carries both"),
    NoDeviceList => ("no-device-list", "E2EE-2",
        "never publishes a device list naming its device (it publishes its bundle only)"),
    ReusedPrekeyIds => ("reused-prekey-ids", "E2EE-7",
        "republishes after prekeys-low with fresh prekeys numbered from 1, ids it published before with other keys"),
    UntypedPrekeys => ("untyped-prekeys", "E2EE-3",
        "publishes its one-time prekeys as 32 bytes, without the 0x05 type byte"),
    CorruptSignature => ("corrupt-signature", "E2EE-4",
        "publishes a signed prekey signature with one bit flipped, which does not verify"),
    IgnoreOneTimePrekey => ("ignore-one-time-prekey", "E2EE-9",
        "sets sessions up without the one-time prekey the gatekeeper handed out"),
    TextInId => ("text-in-id", "E2EE-20",
        "makes each message id from the hex of the text it carries"),
    SidMismatch => ("sid-mismatch", "E2EE-1",
        "sends envelopes whose sid is not the device id its bundle and device list carry"),
    PayloadFirst => ("payload-first", "E2EE-13",
        "writes <payload/> before <header/> in its envelopes"),
    TextWithNewline => ("text-with-newline", "E2EE-24",
        "encrypts the text with a line feed appended"),
    NormalMessageType => ("normal-message-type", "STANZA-11",
        "sends its encrypted messages as type normal, not chat"),
    ReusedMessageId => ("reused-message-id", "STANZA-12",
        "gives every message it sends the same id"),
    NoReceiptRequest => ("no-receipt-request", "STANZA-15",
        "asks for no receipt in the messages it sends"),
    NoOwnDevices => ("no-own-devices", "E2EE-14",
        "encrypts for the recipient's devices only, leaving out its own account's other devices"),
    StaleDeviceLists => ("stale-device-lists", "E2EE-27",
        "keeps the first device list it learned for a peer, ignoring later fetches and events"),
    DiscoWithoutOmemo => ("disco-without-omemo", "STANZA-28",
        "leaves eu.siacs.conversations.axolotl and urn:xmpp:receipts out of disco#info, although it implements them"),
    ServerAcceptsUnsigned => ("server-accepts-unsigned", "AUTH-3",
        "serves gatekeeper requests without verifying their signature headers at all"),
    ServerNoReplayCache => ("server-no-replay-cache", "AUTH-5",
        "keeps no memory of accepted nonces, so a replayed signed request is served again"),
    ServerIgnoresTimestamp => ("server-ignores-timestamp", "AUTH-4",
        "accepts signed requests whatever their X-Gatekeeper-Timestamp, however stale"),
    ServerErrorForInvalidToken => ("server-error-for-invalid-token", "AUTH-8",
        "answers 403 instead of 200 with valid false when the token is not valid for the user"),
    ServerIgnoresTokenUser => ("server-ignores-token-user", "AUTH-9",
        "answers valid true for any user when the token is currently valid for someone"),
    ServerEchoesToken => ("server-echoes-token", "AUTH-10",
        "copies the received token into its authentication answer"),
    ServerAnyMethod => ("server-any-method", "AUTH-13",
        "serves GET (and any other method) on the gatekeeper endpoints as if it were POST"),
    ServerConflictOnRepeat => ("server-conflict-on-repeat", "PUSH-7",
        "answers 409 to a push whose Idempotency-Key it already accepted, instead of 2xx"),
    Server500UnknownDevice => ("server-500-unknown-device", "PUSH-9",
        "answers 500 instead of 404 to a push for a device it does not know"),
    ServerProofWrongBytes => ("server-proof-wrong-bytes", "IDPROOF-2",
        "signs identifier proofs over their bytes with a line feed appended"),
    ServerLongProof => ("server-long-proof", "IDPROOF-5",
        "issues identifier proofs valid for 3600 s instead of at most 300 s"),
    ServerLenientAuthBody => ("server-lenient-auth-body", "AUTH-11",
        "takes an authentication body whose token is not a string as an unknown token (200) instead of 400"),
    ServerNoRequestId => ("server-no-request-id", "AUTH-12",
        "leaves request_id out of its authentication answers"),
    ServerValidAsString => ("server-valid-as-string", "AUTH-6",
        "answers valid as the string \"true\" or \"false\" instead of a JSON boolean"),
    ServerIgnoresContentType => ("server-ignores-content-type", "AUTH-15",
        "reads the body as JSON whatever its Content-Type, instead of answering 415"),
    ServerRefusesHighPriority => ("server-refuses-high-priority", "PUSH-1",
        "answers 400 to a push whose priority is high"),
    ServerLenientPush => ("server-lenient-push", "PUSH-8",
        "accepts a push without an Idempotency-Key or with an unknown priority, instead of 400"),
    EnrollWithoutOptIn => ("enroll-without-opt-in", "ENROLL-18",
        "enrolls the user even when the enroll command says opted_in false"),
    RepeatRefusedEnrollment => ("repeat-refused-enrollment", "ENROLL-11",
        "after a 400, 401, 403 or 415 answer sends the same enrollment body once more before answering"),
    EnrollAnyCertificate => ("enroll-any-certificate", "ENROLL-7",
        "accepts any server certificate from the enrollment API"),
    IgnoreRetryAfter => ("ignore-retry-after", "ENROLL-13",
        "retries an enrollment at once after a 429 answer, whatever its Retry-After"),
    FixedDeviceId => ("fixed-device-id", "ENROLL-5",
        "uses device id 1 for every device instead of a random one"),
    FewEnrollmentPrekeys => ("few-enrollment-prekeys", "ENROLL-4",
        "sends 99 one-time prekeys in its enrollment request instead of at least 100"),
    CredentialInEvent => ("credential-in-event", "ENROLL-10",
        "puts the enrolled credential in its enrolled driver event"),
    LoginPlainWithoutProof => ("login-plain-without-proof", "IDPROOF-14",
        "logs an enrolled device in with SASL PLAIN and no proof although PLAIN-IDPROOF is offered"),
    ReuseEnrollmentProof => ("reuse-enrollment-proof", "IDPROOF-14",
        "presents at an enrolled login the proof it sent at enrollment instead of the fresh one"),
    SameDeviceIdAfterConflict => ("same-device-id-after-conflict", "ENROLL-12",
        "keeps its device id after a 409 device_id_conflict answer"),
    NoProofAtEnrollment => ("no-proof-at-enrollment", "IDPROOF-9",
        "leaves identifier_proof out of its enrollment request"),
    LeakPerStanza => ("leak-per-stanza", "STREAM-32",
        "keeps a copy of every stanza it receives, each in a 1 MiB buffer it never frees (growing without bound); the copy is taken before its parser measures the stanza, so one over 1 MiB overflows the buffer and the process aborts instead of refusing it"),
    NoRetryOnServerError => ("no-retry-on-server-error", "ENROLL-14",
        "gives up on an enrollment at the first 5xx answer or connection failure instead of retrying after 1 s"),
    IgnorePush => ("ignore-push", "PUSH-10",
        "is never woken by its own server's pushes: no push_received, no connection"),
    ServerWakesTwice => ("server-wakes-twice", "PUSH-7",
        "wakes its client again for a push whose Idempotency-Key it already accepted"),
    ServerRedirectsTrailingSlash => ("server-redirects-trailing-slash", "AUTH-14",
        "answers a request to /gatecheck/v1/auth/ or /gatecheck/v1/push/ with a 308 redirect to the path without the slash"),
    MediaKeyInBody => ("media-key-in-body", "MEDIA-19",
        "repeats the aesgcm:// reference of every file it shares, key included, in a plaintext <body/> beside the envelope"),
    MediaReusedKey => ("media-reused-key", "MEDIA-1",
        "encrypts every file it shares under one key and IV drawn once per process"),
    MediaNoTagCheck => ("media-no-tag-check", "MEDIA-24",
        "reports media_received for a downloaded object without verifying its GCM tag"),
    MediaIgnoresSizeLimit => ("media-ignores-size-limit", "MEDIA-23",
        "downloads objects announced over 100 MiB (up to 200 MiB) and uploads files over 104,857,584 bytes"),
    MediaSendsCookie => ("media-sends-cookie", "MEDIA-15",
        "sends a Cookie header with every media download"),
    MediaDropsUntyped => ("media-drops-untyped", "MEDIA-21",
        "silently drops a received file whose type it cannot tell from its first bytes (no event at all)"),
    MediaUploadAuth => ("media-upload-auth", "MEDIA-20",
        "sends an Authorization header with its PUT to an upload slot"),
    ServerMediaGuessableUrl => ("server-media-guessable-url", "MEDIA-4",
        "names stored objects with sequential numbers (/media/1, /media/2, ...) instead of 32 random bytes"),
    ServerMediaRedirect => ("server-media-redirect", "MEDIA-22",
        "answers a GET of /media/TOKEN with a 302 redirect to /media/TOKEN/, where it serves the object"),
    ServerMediaHtmlType => ("server-media-html-type", "MEDIA-7",
        "serves media objects as Content-Type: text/html"),
    ServerMediaSetsCookie => ("server-media-sets-cookie", "MEDIA-6",
        "sets a cookie (Set-Cookie) in its media answers"),
    ServerMediaNeverExpires => ("server-media-never-expires", "MEDIA-10",
        "keeps serving objects after the declared retention ended"),
    ServerMediaShortRetention => ("server-media-short-retention", "MEDIA-8",
        "expires objects one hour after they were stored, whatever retention it declares"),
    ServerMediaBadRange => ("server-media-bad-range", "MEDIA-17",
        "answers a Range request with 206 and the right Content-Range, but its first byte flipped"),
    ServerMediaNoSizeLimit => ("server-media-no-size-limit", "MEDIA-23",
        "stores objects over 100 MiB (up to 128 MiB) instead of answering 413"),
    MediaRefusesUntyped => ("media-refuses-untyped", "MEDIA-25",
        "refuses a received file whose type it cannot tell with media_rejected unsupported-type instead of offering it"),
    MediaReferencesPutUrl => ("media-references-put-url", "MEDIA-18",
        "sends the reference of the slot's put_url instead of its get_url"),
    ServerMediaTruncatedBody => ("server-media-truncated-body", "MEDIA-5",
        "serves every object without its last byte (and a Content-Length to match)"),
    ServerMediaWeekRetention => ("server-media-week-retention", "MEDIA-9",
        "keeps objects 7 days (604,800 s) whatever it declares, more than MEDIA-8's 24 hours but less than MEDIA-9's 14 days"),
    // Media (SPEC.md §14), client and server mutants: keep new ones above this line.
    ProxyNoProxyHeader => ("proxy-no-proxy-header", "PROXY-2",
        "writes no PROXY protocol header on its upstream connections: the Noise intro comes first"),
    ProxyWrongAddress => ("proxy-wrong-address", "PROXY-2",
        "writes its own address towards the gatekeeper as the source of the PROXY header, not the client's"),
    ProxyHeaderTlv => ("proxy-header-tlv", "PROXY-2",
        "appends a PP2_TYPE_AUTHORITY TLV naming the gatekeeper's domain to its PROXY header"),
    ProxyEarlyUpstream => ("proxy-early-upstream", "PROXY-3",
        "opens the upstream connection (header and Noise handshake) as soon as a client connects, before the client's transport handshake"),
    ProxyAcceptsAnyUpstreamKey => ("proxy-accepts-any-upstream-key", "PROXY-1",
        "completes the upstream Noise handshake whatever static key the gatekeeper presents"),
    ProxyKeepsUpstream => ("proxy-keeps-upstream", "PROXY-4",
        "keeps the upstream connection open, without a closing tag, for 10 s after its client left"),
    ProxySwallowsStreamError => ("proxy-swallows-stream-error", "PROXY-5",
        "drops the gatekeeper's stream error instead of passing it to the client (the closing tag still goes down)"),
    ProxyReserializesEnvelope => ("proxy-reserializes-envelope", "PROXY-6",
        "rewrites the start tag of every <encrypted/> it forwards with the other quote character (same infoset, other bytes)"),
    ProxyAddsAttribute => ("proxy-adds-attribute", "PROXY-8",
        "adds a data-proxy-client attribute with the client's address to every message stanza it forwards"),
    ProxyAnswersDisco => ("proxy-answers-disco", "PROXY-10",
        "answers the gatekeeper's disco#info requests itself, advertising Jingle (urn:xmpp:jingle:1), which the client does not implement"),
    ProxyIgnoresOptIn => ("proxy-ignores-opt-in", "PROXY-12",
        "forwards the SASL <auth> of users who have not opted in"),
    ProxyForwardsMalformed => ("proxy-forwards-malformed", "PROXY-14",
        "forwards faulty client input (and all after it) to the gatekeeper instead of refusing it with a stream error"),
    ProxyDelays => ("proxy-delays", "PROXY-15",
        "holds every stanza 1.5 s before forwarding it, in both directions"),
    ProxyTightLimit => ("proxy-tight-limit", "PROXY-15",
        "refuses client stanzas over 128 KiB with policy-violation, below the 256 KiB every receiver must accept"),
    ProxyTrimsBody => ("proxy-trims-body", "PROXY-7",
        "trims leading and trailing whitespace from the text of every <body/> it forwards, either way (envelopes untouched)"),
    ProxyRewritesAuth => ("proxy-rewrites-auth", "PROXY-13",
        "re-encodes the client's SASL initial response with the opted-in bare JID it checked as authorization identity"),
    ProxyPingsUpstream => ("proxy-pings-upstream", "PROXY-9",
        "turns its bound client's whitespace keepalives into XMPP pings of its own upstream, and drops the gatekeeper's answers to them"),
    ProxyDropsPresence => ("proxy-drops-presence", "PROXY-9",
        "drops every presence stanza its client sends instead of forwarding it"),
    ProxyBuffersOffline => ("proxy-buffers-offline", "PROXY-11",
        "keeps the upstream stream open 3 s after its client's connection dropped (then closes it, within PROXY-4's 5 s), keeping the stanzas the gatekeeper sends meanwhile, and delivers them to the account's next client connection once it is bound"),
    ProxyRefusesWhitespace => ("proxy-refuses-whitespace", "STREAM-33",
        "answers whitespace between its bound client's stanzas (a keepalive) with the stream error not-well-formed"),
    ProxyBouncesErrors => ("proxy-bounces-errors", "STANZA-9",
        "answers each stanza of type error its client sends with an error stanza of its own (undefined-condition) instead of forwarding it"),
    // Proxy (SPEC.md §15), `proxy-` mutants: keep new ones above this line.
}

impl Mutant {
    /// The mutant called `name`, if any.
    pub fn from_name(name: &str) -> Option<Mutant> {
        Mutant::ALL.iter().copied().find(|m| m.name() == name)
    }

    /// The role the mutant applies to (`client`, `server` or `proxy`, from the name's
    /// `server-` or `proxy-` prefix): a mutant given with another role would change nothing,
    /// and a run that silently tests the reference instead of the deviation asked for is
    /// worse than a usage error. [`Mutant::None`] fits every role.
    pub fn role(self) -> Option<&'static str> {
        let name = self.name();
        if self == Mutant::None {
            None
        } else if name.starts_with("server-") {
            Some("server")
        } else if name.starts_with("proxy-") {
            Some("proxy")
        } else {
            Some("client")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        for (i, m) in Mutant::ALL.iter().enumerate() {
            assert_eq!(Mutant::from_name(m.name()), Some(*m));
            assert!(Mutant::ALL[i + 1..].iter().all(|o| o.name() != m.name()));
            assert!(m.requirement().contains('-'), "{m:?}");
        }
        assert!(Mutant::ALL.len() >= 16);
        assert_eq!(Mutant::from_name("none"), None);
    }

    #[test]
    fn server_mutants_belong_to_the_server_role() {
        for m in Mutant::ALL {
            let server = m.role() == Some("server");
            assert_eq!(server, m.name().starts_with("server-"), "{m:?}");
        }
        assert_eq!(Mutant::None.role(), None);
    }
}
