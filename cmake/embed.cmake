# Writes the bytes of IN as a C++ array NAME into the header OUT (cmake -P).
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE "${OUT}" "// Generated from ${IN} by cmake/embed.cmake.\n#pragma once\n"
     "inline constexpr unsigned char ${NAME}[] = {${bytes}};\n")
