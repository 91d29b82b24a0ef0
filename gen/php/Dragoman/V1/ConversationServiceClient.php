<?php
// GENERATED CODE -- DO NOT EDIT!

namespace Dragoman\V1;

/**
 * The live conversation: each participant streams their speech in and
 * receives events about everyone in the session, including the others'
 * speech translated into their own language.
 *
 * Sessions hold two to eight participants (SessionService). Events about
 * speech name the speaker by `speaker_participant_id` and
 * `speaker_display_name`; `RosterChanged` tells who is in the session.
 * Clients written for two people keep working: `Speaker` still says SELF or
 * PARTNER (PARTNER: anyone else), and SessionPaired, PartnerConnected and
 * PartnerDisconnected are still sent; new clients should use the roster.
 *
 * Native clients use the bidirectional `Converse`. Browsers, which cannot
 * send a client stream over gRPC-Web, use `Listen` for the same events plus
 * `SendAudio` for the audio.
 */
class ConversationServiceClient extends \Grpc\BaseStub {

    /**
     * @param string $hostname hostname
     * @param array $opts channel options
     * @param \Grpc\Channel $channel (optional) re-use channel object
     */
    public function __construct($hostname, $opts, $channel = null) {
        parent::__construct($hostname, $opts, $channel);
    }

    /**
     * The first request must be `join`; then audio chunks, heartbeats and
     * finally `leave` (closing the request stream counts as `leave`). Audio
     * before `join` gives FAILED_PRECONDITION; no `join` within 10 s of
     * opening the stream (setting session.join_timeout_s), DEADLINE_EXCEEDED.
     * Audio (LINEAR16 or Opus, counted in seconds) faster than twice real
     * time, after a burst of 10 s of audio (settings session.max_audio_speed,
     * session.audio_burst_s), ends the stream with RESOURCE_EXHAUSTED. A second live stream of the
     * same participant replaces the first, which ends with ABORTED.
     * After `leave` the server finishes the utterance in progress, sends its
     * events, and closes the stream.
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\BidiStreamingCall
     */
    public function Converse($metadata = [], $options = []) {
        return $this->_bidiRequest('/dragoman.v1.ConversationService/Converse',
        ['\Dragoman\V1\ConverseResponse','decode'],
        $metadata, $options);
    }

    /**
     * Joins the conversation and streams its events, like Converse without
     * the audio half.
     * @param \Dragoman\V1\ListenRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\ServerStreamingCall
     */
    public function Listen(\Dragoman\V1\ListenRequest $argument,
      $metadata = [], $options = []) {
        return $this->_serverStreamRequest('/dragoman.v1.ConversationService/Listen',
        $argument,
        ['\Dragoman\V1\ListenResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * Sends one audio chunk for a participant that is listening. A repeat of
     * the last accepted chunk's sequence (a retry) is acknowledged and not
     * used twice.
     * @param \Dragoman\V1\SendAudioRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function SendAudio(\Dragoman\V1\SendAudioRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.ConversationService/SendAudio',
        $argument,
        ['\Dragoman\V1\SendAudioResponse', 'decode'],
        $metadata, $options);
    }

}
