#include "common/threads.h"

#include <pthread.h>

namespace muscle {

std::thread StartThread(std::string name, std::function<void()> fn) {
  if (name.size() > 15) name.resize(15);
  return std::thread([name = std::move(name), fn = std::move(fn)] {
    pthread_setname_np(pthread_self(), name.c_str());
    fn();
  });
}

}  // namespace muscle
