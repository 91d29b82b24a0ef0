<?php
// GENERATED CODE -- DO NOT EDIT!

namespace Dragoman\V1;

/**
 * Translation sessions of two to eight people. One creates a session (its
 * host) and gets a 6-digit code; the others join with it, each with their
 * own language. Only participants see a session: for anyone else it does
 * not exist (NOT_FOUND).
 */
class SessionServiceClient extends \Grpc\BaseStub {

    /**
     * @param string $hostname hostname
     * @param array $opts channel options
     * @param \Grpc\Channel $channel (optional) re-use channel object
     */
    public function __construct($hostname, $opts, $channel = null) {
        parent::__construct($hostname, $opts, $channel);
    }

    /**
     * Opens a session and returns its pairing code.
     * @param \Dragoman\V1\CreateSessionRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function CreateSession(\Dragoman\V1\CreateSessionRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.SessionService/CreateSession',
        $argument,
        ['\Dragoman\V1\CreateSessionResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * Joins a session by its code, while it is open: not ended, not locked.
     * An unknown or expired code gives NOT_FOUND. Failed joins are limited per
     * caller and per client address (then RESOURCE_EXHAUSTED with a
     * `retry-after` trailer, growing with each refused try), so codes cannot
     * be guessed. Joining is never silent: everyone's stream gets
     * `RosterChanged` naming the joiner, and the host can `RemoveParticipant`.
     * A full session (Session.max_participants) gives RESOURCE_EXHAUSTED, a
     * locked one FAILED_PRECONDITION, a participant the host removed
     * PERMISSION_DENIED; a participant who left joins again, and resumes their
     * event stream where it was.
     * @param \Dragoman\V1\JoinSessionRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function JoinSession(\Dragoman\V1\JoinSessionRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.SessionService/JoinSession',
        $argument,
        ['\Dragoman\V1\JoinSessionResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * Returns a session the caller takes part in.
     * @param \Dragoman\V1\GetSessionRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function GetSession(\Dragoman\V1\GetSessionRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.SessionService/GetSession',
        $argument,
        ['\Dragoman\V1\GetSessionResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * Ends a session for everyone. The host may always end it; another
     * participant only while the session has two participants (else
     * PERMISSION_DENIED: they may LeaveSession).
     * @param \Dragoman\V1\EndSessionRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function EndSession(\Dragoman\V1\EndSessionRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.SessionService/EndSession',
        $argument,
        ['\Dragoman\V1\EndSessionResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * The host removes a participant (e.g. someone they did not give the code
     * to): the participant's conversation streams end with PERMISSION_DENIED,
     * the others get RosterChanged (ROSTER_CHANGE_REMOVED), and the removed
     * user cannot join again. When only the host is left, the session ends
     * (reason "partner removed by the creator"), as a session of two always
     * did. Only the host may remove (else PERMISSION_DENIED); a user id that
     * is not a participant gives NOT_FOUND.
     * @param \Dragoman\V1\RemoveParticipantRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function RemoveParticipant(\Dragoman\V1\RemoveParticipantRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.SessionService/RemoveParticipant',
        $argument,
        ['\Dragoman\V1\RemoveParticipantResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * The host locks the session against new joiners, or unlocks it. Everyone
     * gets RosterChanged (LOCKED or UNLOCKED). Only the host may (else
     * PERMISSION_DENIED); an ended session gives FAILED_PRECONDITION.
     * @param \Dragoman\V1\LockSessionRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function LockSession(\Dragoman\V1\LockSessionRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.SessionService/LockSession',
        $argument,
        ['\Dragoman\V1\LockSessionResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * A participant other than the host leaves: their streams end, the others
     * get RosterChanged (ROSTER_CHANGE_LEFT), and nothing more is translated
     * for them. They may join again with the code while the session is open.
     * When one participant is left, the session ends. The host cannot leave
     * (FAILED_PRECONDITION: EndSession instead).
     * @param \Dragoman\V1\LeaveSessionRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function LeaveSession(\Dragoman\V1\LeaveSessionRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.SessionService/LeaveSession',
        $argument,
        ['\Dragoman\V1\LeaveSessionResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * Lists the sessions the caller took part in, newest first, a page at a
     * time. Sessions created while paging never shift the pages that follow:
     * no session is returned twice or skipped.
     * @param \Dragoman\V1\ListSessionsRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function ListSessions(\Dragoman\V1\ListSessionsRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.SessionService/ListSessions',
        $argument,
        ['\Dragoman\V1\ListSessionsResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * Lists the languages this deployment can recognise and speak, and how
     * each ordered pair is translated, so that a client offers only what
     * works. Open to anyone, signed in or not: it says what the deployment
     * has installed, nothing about its users.
     * @param \Dragoman\V1\ListLanguagesRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function ListLanguages(\Dragoman\V1\ListLanguagesRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.SessionService/ListLanguages',
        $argument,
        ['\Dragoman\V1\ListLanguagesResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * The transcript of a session the caller takes part in, as a file: each
     * utterance with its speaker, language, text, the translation into the
     * caller's language where one was made (what they heard), and its start
     * and end from the session's start. Live sessions give what was said so
     * far. Someone else's session gives NOT_FOUND; an unset or unknown
     * format INVALID_ARGUMENT naming the formats. One response, not a
     * stream: a transcript is text, a few hundred KiB for hours of talk,
     * and a browser saves one message as a file most simply; one over the
     * message limit (4 MiB) gives RESOURCE_EXHAUSTED. A PRIVACY_MODE_PRIVATE
     * session has none (FAILED_PRECONDITION); a PRIVACY_MODE_PARTICIPANT_KEYED
     * one gives, in any format, the caller's own copy sealed with their key
     * (application/vnd.dragoman.sealed-transcript+json; docs/privacy.md says
     * how to open it).
     * @param \Dragoman\V1\ExportTranscriptRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function ExportTranscript(\Dragoman\V1\ExportTranscriptRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.SessionService/ExportTranscript',
        $argument,
        ['\Dragoman\V1\ExportTranscriptResponse', 'decode'],
        $metadata, $options);
    }

}
