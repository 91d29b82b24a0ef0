<?php
// GENERATED CODE -- DO NOT EDIT!

namespace Dragoman\V1;

/**
 * Recordings of sessions, kept only with every participant's consent
 * (docs/recording.md).
 *
 * A participant asks to record a live session (RequestRecording). Every
 * participant in the session gets RecordingChanged (RECORDING_CHANGE_REQUESTED)
 * on their conversation stream and answers it (AnswerRecordingConsent); the
 * asker's request is their own consent. Nothing is kept until everyone has
 * consented; one refusal declines the request. While recording, anyone may
 * withdraw (WithdrawRecordingConsent): the recording stops at once and nothing
 * said after that is kept. It also stops when the session ends, and when
 * someone joins (they were not asked; ask again to go on recording).
 *
 * A recording holds the transcript and the translations of each utterance,
 * and optionally the translated speech as Ogg Opus, all encrypted at rest
 * with the server's text keys (as STANDARD sessions' text is). The speaker's
 * own voice is kept only when every participant also opted in to that.
 * Recordings expire (setting recording.retention_days, default 30) and are
 * then deleted. Only STANDARD sessions can be recorded.
 *
 * Only the session's participants see its recordings: for anyone else a
 * recording does not exist (NOT_FOUND).
 */
class RecordingServiceClient extends \Grpc\BaseStub {

    /**
     * @param string $hostname hostname
     * @param array $opts channel options
     * @param \Grpc\Channel $channel (optional) re-use channel object
     */
    public function __construct($hostname, $opts, $channel = null) {
        parent::__construct($hostname, $opts, $channel);
    }

    /**
     * Asks everyone in a live session to consent to recording it. The session
     * must be a PRIVACY_MODE_STANDARD one (else FAILED_PRECONDITION) with at
     * least two participants, and have no recording awaiting consent or
     * running (FAILED_PRECONDITION naming it). A session takes at most a few
     * requests (setting recording.max_requests_per_session, default 5), so
     * that a participant cannot flood the others with consent questions (then
     * RESOURCE_EXHAUSTED). Someone else's or an unknown session gives
     * NOT_FOUND; an ended one FAILED_PRECONDITION.
     * @param \Dragoman\V1\RequestRecordingRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function RequestRecording(\Dragoman\V1\RequestRecordingRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.RecordingService/RequestRecording',
        $argument,
        ['\Dragoman\V1\RequestRecordingResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * Answers a consent request. When the last participant consents, the
     * recording starts and everyone gets RECORDING_CHANGE_STARTED; a refusal
     * declines it for everyone (RECORDING_CHANGE_DECLINED). A caller who is not
     * a participant of the recording's session gets NOT_FOUND; one who already
     * answered, or a recording no longer awaiting consent, FAILED_PRECONDITION
     * (to stop a running recording, WithdrawRecordingConsent).
     * @param \Dragoman\V1\AnswerRecordingConsentRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function AnswerRecordingConsent(\Dragoman\V1\AnswerRecordingConsentRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.RecordingService/AnswerRecordingConsent',
        $argument,
        ['\Dragoman\V1\AnswerRecordingConsentResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * Withdraws the caller's consent: a recording awaiting consent is declined,
     * a running one stops at once (RECORDING_CHANGE_WITHDRAWN to everyone) and
     * nothing said after it is kept; what was kept before stays until it
     * expires or is deleted. Any participant may, whoever asked. A recording
     * already stopped gives FAILED_PRECONDITION; someone else's, NOT_FOUND.
     * @param \Dragoman\V1\WithdrawRecordingConsentRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function WithdrawRecordingConsent(\Dragoman\V1\WithdrawRecordingConsentRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.RecordingService/WithdrawRecordingConsent',
        $argument,
        ['\Dragoman\V1\WithdrawRecordingConsentResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * Lists the recordings of sessions the caller took part in, newest first,
     * a page at a time; expired ones are not listed.
     * @param \Dragoman\V1\ListRecordingsRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function ListRecordings(\Dragoman\V1\ListRecordingsRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.RecordingService/ListRecordings',
        $argument,
        ['\Dragoman\V1\ListRecordingsResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * Returns one recording. Someone else's or an unknown one gives NOT_FOUND,
     * an expired one NOT_FOUND too (it is deleted).
     * @param \Dragoman\V1\GetRecordingRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function GetRecording(\Dragoman\V1\GetRecordingRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.RecordingService/GetRecording',
        $argument,
        ['\Dragoman\V1\GetRecordingResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * Streams a recording for playback or saving: first the recording, then
     * each kept utterance in spoken order with its texts and speech. Someone
     * else's, an unknown or an expired recording gives NOT_FOUND; one that never
     * started (declined) has no utterances.
     * @param \Dragoman\V1\DownloadRecordingRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\ServerStreamingCall
     */
    public function DownloadRecording(\Dragoman\V1\DownloadRecordingRequest $argument,
      $metadata = [], $options = []) {
        return $this->_serverStreamRequest('/dragoman.v1.RecordingService/DownloadRecording',
        $argument,
        ['\Dragoman\V1\DownloadRecordingResponse', 'decode'],
        $metadata, $options);
    }

}
