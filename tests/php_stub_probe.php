<?php
// Loads the checked-in PHP message and enum classes with Debian's php-google-protobuf
// and prints what they define as JSON, for tests/test_generated.py to compare with proto/.
// The service clients need the PECL grpc extension, which Debian does not package.
// Usage: php tests/php_stub_probe.php gen/php
declare(strict_types=1);

$stubs = $argv[1];
spl_autoload_register(function (string $class) use ($stubs): void {
    foreach ([$stubs, '/usr/share/php'] as $root) {
        $file = $root . '/' . str_replace('\\', '/', $class) . '.php';
        if (is_file($file)) {
            require $file;
            return;
        }
    }
});

$pool = \Google\Protobuf\DescriptorPool::getGeneratedPool();
$messages = [];
$enums = [];
foreach (glob($stubs . '/Dragoman/V1/*.php') as $file) {
    if (str_contains(file_get_contents($file), 'extends \Grpc\BaseStub')) {
        continue;
    }
    $class = 'Dragoman\\V1\\' . basename($file, '.php');
    if (is_subclass_of($class, \Google\Protobuf\Internal\Message::class)) {
        new $class();
        $messages[] = $pool->getDescriptorByClassName($class)->getFullName();
    } else {
        $enum = $pool->getEnumDescriptorByClassName($class);
        $values = [];
        for ($i = 0; $i < $enum->getValueCount(); $i++) {
            $value = $enum->getValue($i);
            $values[$class::name($value->getNumber())] = $value->getNumber();
        }
        $enums[$enum->getFullName()] = $values;
    }
}
sort($messages);
ksort($enums);

// Non-ASCII and an apostrophe: the encoding must match what Python's stubs read.
$login = new \Dragoman\V1\LoginRequest(['username' => 'ana', 'password' => 'pässwörd', 'device_name' => "Ana's laptop"]);
echo json_encode(['messages' => $messages, 'enums' => $enums,
                  'login_request' => base64_encode($login->serializeToString())], JSON_THROW_ON_ERROR), "\n";
