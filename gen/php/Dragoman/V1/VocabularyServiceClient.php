<?php
// GENERATED CODE -- DO NOT EDIT!

namespace Dragoman\V1;

/**
 * A user's custom vocabularies: names and terms the recogniser should expect,
 * translations that must be used, and words that must never be translated.
 * Every session the user takes part in uses all of their vocabularies: their
 * `terms` and `do_not_translate` words bias the recognition of their own
 * speech (hotwords), and the `translations` of a pair, with every
 * participant's `do_not_translate` words, are honoured when anyone's speech
 * is translated along that pair. A vocabulary belongs to its creator alone:
 * for anyone else it does not exist (NOT_FOUND). Counts and lengths are
 * limited by the deployment (settings session.max_vocabularies,
 * session.max_vocabulary_entries, session.max_vocabulary_term_chars): a term
 * too long or a vocabulary with too many entries gives INVALID_ARGUMENT
 * naming the field, one vocabulary too many RESOURCE_EXHAUSTED.
 */
class VocabularyServiceClient extends \Grpc\BaseStub {

    /**
     * @param string $hostname hostname
     * @param array $opts channel options
     * @param \Grpc\Channel $channel (optional) re-use channel object
     */
    public function __construct($hostname, $opts, $channel = null) {
        parent::__construct($hostname, $opts, $channel);
    }

    /**
     * Creates a vocabulary.
     * @param \Dragoman\V1\CreateVocabularyRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function CreateVocabulary(\Dragoman\V1\CreateVocabularyRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.VocabularyService/CreateVocabulary',
        $argument,
        ['\Dragoman\V1\CreateVocabularyResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * Lists the caller's vocabularies, oldest first.
     * @param \Dragoman\V1\ListVocabulariesRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function ListVocabularies(\Dragoman\V1\ListVocabulariesRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.VocabularyService/ListVocabularies',
        $argument,
        ['\Dragoman\V1\ListVocabulariesResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * Returns one of the caller's vocabularies.
     * @param \Dragoman\V1\GetVocabularyRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function GetVocabulary(\Dragoman\V1\GetVocabularyRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.VocabularyService/GetVocabulary',
        $argument,
        ['\Dragoman\V1\GetVocabularyResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * Replaces the name and every entry of one of the caller's vocabularies.
     * A session reads its participants' vocabularies when they create or join
     * it: a change shows in the next session (or after joining again).
     * @param \Dragoman\V1\UpdateVocabularyRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function UpdateVocabulary(\Dragoman\V1\UpdateVocabularyRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.VocabularyService/UpdateVocabulary',
        $argument,
        ['\Dragoman\V1\UpdateVocabularyResponse', 'decode'],
        $metadata, $options);
    }

    /**
     * Deletes one of the caller's vocabularies.
     * @param \Dragoman\V1\DeleteVocabularyRequest $argument input argument
     * @param array $metadata metadata
     * @param array $options call options
     * @return \Grpc\UnaryCall
     */
    public function DeleteVocabulary(\Dragoman\V1\DeleteVocabularyRequest $argument,
      $metadata = [], $options = []) {
        return $this->_simpleRequest('/dragoman.v1.VocabularyService/DeleteVocabulary',
        $argument,
        ['\Dragoman\V1\DeleteVocabularyResponse', 'decode'],
        $metadata, $options);
    }

}
