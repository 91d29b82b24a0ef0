# Loads every checked-in Ruby stub with Debian's grpc and google-protobuf gems and
# prints what they define as JSON, for tests/test_generated.py to compare with proto/.
# Usage: ruby tests/ruby_stub_probe.rb gen/ruby
require 'base64'
require 'json'

root = ARGV.fetch(0)
$LOAD_PATH.unshift(root)
Dir.glob('**/*.rb', base: root).sort.each { |file| require file.delete_suffix('.rb') }

def message_name(type)
  type = type.type if type.is_a?(GRPC::RpcDesc::Stream)
  type.descriptor.name
end

services = {}
Dragoman::V1.constants.sort.each do |name|
  mod = Dragoman::V1.const_get(name)
  next unless mod.is_a?(Module) && !mod.is_a?(Class) && mod.const_defined?(:Service, false)

  service = mod::Service
  services[service.service_name] = {
    'methods' => service.rpc_descs.values.map do |desc|
      { 'name' => desc.name.to_s,
        'input' => message_name(desc.input), 'output' => message_name(desc.output),
        'client_streaming' => desc.input.is_a?(GRPC::RpcDesc::Stream),
        'server_streaming' => desc.output.is_a?(GRPC::RpcDesc::Stream) }
    end,
    'stub_methods' => mod::Stub.public_instance_methods(false).map(&:to_s).sort
  }
end

# Non-ASCII and an apostrophe: the encoding must match what Python's stubs read.
login = Dragoman::V1::LoginRequest.new(username: 'ana', password: 'pässwörd', device_name: "Ana's laptop")
puts JSON.generate('services' => services,
                   'login_request' => Base64.strict_encode64(Dragoman::V1::LoginRequest.encode(login)))
